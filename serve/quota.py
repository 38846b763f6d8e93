"""Per-key quotas of `nmt serve --keys FILE`, shared by every HTTP process through one sqlite database (WAL mode).

The main process writes the keys (serve.keys) into the database at start and again on SIGHUP, in one transaction
that bumps a generation number; each HTTP process re-reads the keys when the generation has changed, so a reload
takes effect at the next request of every process and no request is dropped. Usage is counted per key in fixed
windows that start with the key's first request in the window: requests per minute (every POST) and characters per
day (the characters of the texts to translate, charged before translating). Over a limit is a 429 with Retry-After
(the seconds left in the window). Keys are compared in constant time against every loaded key (serve.auth); the
database names a key only by its SHA-256, and neither a key nor its hash is logged or used as a metric label.

With `--redis URL` (SharedQuotaStore) the keys stay in that local database, read from each replica's own keys file,
and the usage moves to Redis, counted with the `limits` library so that every replica of a cluster shares each
key's limits exactly: requests per minute in a moving window (never more than N requests in any 60 s, one list of
at most N timestamps per key), characters per day in a fixed window that starts with the key's first request of
the day (one counter per key; a moving window would keep one entry per character). One code path decides
admission (`admit`) whichever store counts. While Redis cannot be reached, `--redis-fail open` (the default)
counts each key on this replica alone, as a single host does (a key gets at most its limits on each replica), and
`--redis-fail closed` refuses counted requests with 429 and Retry-After; either way nothing waits longer than the
Redis timeout (serve.redisconn).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from serve.auth import Keys, authenticate, key_matches, run
from serve.keys import KeyLimits, KeysFileError, read_keys_file
from serve.logs import LOGGER
from serve.redisconn import DEFAULT_TIMEOUT, Breaker, client_options

logger = logging.getLogger(LOGGER)

DB_NAME = "quota.sqlite3"
MINUTE, DAY = "minute", "day"
WAIT_FOR_LOCK = 5.0  # seconds a process waits for another's write transaction
FAIL_MODES = ("open", "closed")  # what --redis-fail does while Redis is unreachable
UNREACHABLE_RETRY = 5  # Retry-After (s) of a request refused with --redis-fail closed while Redis is unreachable
REDIS_PREFIX = "nmt-quota"  # the namespace of the quota keys in Redis


class QuotaExceeded(Exception):
    """A key is over one of its limits; `retry_after` seconds until its window ends."""

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.detail, self.retry_after = detail, retry_after


def key_id(key: str) -> str:
    """How the database names a key: its SHA-256 (hex)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Windows:
    """Window lengths in seconds (shorter ones only in tests: `nmt serve --quota-windows`)."""

    minute: float = 60.0
    day: float = 86400.0


class QuotaStore:
    """The shared database: keys with their limits, usage per key and window. One connection per process and
    thread (sqlite connections do not cross a fork)."""

    def __init__(self, path: str, windows: Windows = Windows()):
        self.path = path
        self.windows = windows
        self._local = threading.local()
        self._keys: tuple[int, list[KeyLimits]] = (-1, [])

    # -- connections --
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=WAIT_FOR_LOCK, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            db.close()
        self._local.db = None

    def __getstate__(self) -> dict:  # connections never travel to another process
        return {"path": self.path, "windows": self.windows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["windows"])

    @classmethod
    def create(cls, keys: list[KeyLimits], windows: Windows = Windows()) -> QuotaStore:
        """A new database in a private temporary directory holding `keys` (remove it with `remove`)."""
        directory = tempfile.mkdtemp(prefix="nmt-quota-")
        store = cls(os.path.join(directory, DB_NAME), windows)
        db = store._db()
        db.executescript(
            """
            CREATE TABLE keys (id TEXT PRIMARY KEY, key TEXT NOT NULL, requests_per_minute INTEGER,
                               characters_per_day INTEGER);
            CREATE TABLE usage (id TEXT, window TEXT, started REAL NOT NULL, used INTEGER NOT NULL,
                                PRIMARY KEY (id, window));
            CREATE TABLE generation (n INTEGER NOT NULL);
            INSERT INTO generation VALUES (0);
            """
        )
        store.load(keys)
        store.close()  # the HTTP processes are forked after this: each opens its own connection
        return store

    def remove(self) -> None:
        self.close()
        shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)

    # -- keys --
    def load(self, keys: Iterable[KeyLimits]) -> int:
        """Replace the keys (at start and on SIGHUP) in one transaction; usage of keys that stay is kept."""
        rows = [(key_id(k.key), k.key, k.requests_per_minute, k.characters_per_day) for k in keys]
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM keys")
            db.executemany("INSERT INTO keys VALUES (?, ?, ?, ?)", rows)
            db.execute("DELETE FROM usage WHERE id NOT IN (SELECT id FROM keys)")
            db.execute("UPDATE generation SET n = n + 1")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def keys(self) -> list[KeyLimits]:
        """The loaded keys, re-read from the database when another process has reloaded them."""
        db = self._db()
        generation = db.execute("SELECT n FROM generation").fetchone()[0]
        if generation != self._keys[0]:
            rows = db.execute("SELECT key, requests_per_minute, characters_per_day FROM keys").fetchall()
            self._keys = (generation, [KeyLimits(*row) for row in rows])
        return self._keys[1]

    blocking = True  # sqlite: find and charge run in a worker thread
    unknown_status = 403

    def find(self, given: bytes) -> KeyLimits | None:
        """The loaded key equal to `given` (serve.auth.given_key), compared in constant time with every key (no
        early exit)."""
        found = None
        for candidate in self.keys():
            if key_matches(given, candidate.key) and found is None:
                found = candidate
        return found

    # -- usage --
    def charge(self, key: KeyLimits, window: str, amount: int, limit: int | None) -> None:
        """Add `amount` to the key's usage in `window`, or raise QuotaExceeded (and add nothing) when that would
        go over `limit`. An amount larger than the limit itself can never pass."""
        if limit is None:
            return
        length = self.windows.minute if window == MINUTE else self.windows.day
        what = "requests per minute" if window == MINUTE else "characters per day"
        ident = key_id(key.key)
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            row = db.execute("SELECT started, used FROM usage WHERE id = ? AND window = ?", (ident, window)).fetchone()
            started, used = (now, 0) if row is None or now >= row[0] + length else row
            if used + amount > limit:
                db.execute("ROLLBACK")
                if amount > limit:
                    raise QuotaExceeded(f"{amount} characters in one request, over this key's {limit} {what}", 0)
                retry = max(1, math.ceil(started + length - now))
                raise QuotaExceeded(f"over this key's limit of {limit} {what}; retry after {retry} s", retry)
            db.execute("INSERT OR REPLACE INTO usage VALUES (?, ?, ?, ?)", (ident, window, started, used + amount))
            db.execute("COMMIT")
        except QuotaExceeded:
            raise
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


class SharedQuotaStore(QuotaStore):
    """QuotaStore whose usage lives in Redis (`limits`' RedisStorage), shared by every replica pointing at `url`;
    the keys stay in the local database. `fail` ("open" or "closed") decides while Redis is unreachable."""

    def __init__(
        self,
        path: str,
        windows: Windows = Windows(),
        url: str = "",
        fail: str = "open",
        timeout: float = DEFAULT_TIMEOUT,
    ):
        if fail not in FAIL_MODES:
            raise ValueError(f"fail must be one of {FAIL_MODES}, got {fail!r}")
        super().__init__(path, windows)
        self.url, self.fail, self.timeout = url, fail, timeout
        self.breaker = Breaker("quota", url)
        self._limiters: tuple[int, Any, Any] | None = None  # (pid, moving window, fixed window)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "url": self.url, "fail": self.fail, "timeout": self.timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["windows"], state["url"], state["fail"], state["timeout"])

    @classmethod
    def create(  # type: ignore[override]
        cls, keys: list[KeyLimits], windows: Windows = Windows(), url: str = "", fail: str = "open",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> SharedQuotaStore:  # fmt: skip
        """The local keys database (QuotaStore.create) with its usage counted in Redis at `url`."""
        local = QuotaStore.create(keys, windows)
        return cls(local.path, windows, url, fail, timeout)

    def limiters(self) -> tuple[Any, Any]:
        """(moving window, fixed window) rate limiters on this process's Redis connection pool."""
        if self._limiters is None or self._limiters[0] != os.getpid():
            from limits.storage import RedisStorage
            from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

            storage = RedisStorage(self.url, key_prefix=REDIS_PREFIX, **client_options(self.timeout))
            self._limiters = (os.getpid(), MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage))
        return self._limiters[1], self._limiters[2]

    def charge(self, key: KeyLimits, window: str, amount: int, limit: int | None) -> None:
        """QuotaStore.charge, counted in Redis: requests per minute in a moving window, characters per day in a
        fixed window. While Redis is unreachable: this replica's own count (fail open) or 429 (fail closed)."""
        if limit is None:
            return
        what = "requests per minute" if window == MINUTE else "characters per day"
        if amount > limit:
            raise QuotaExceeded(f"{amount} characters in one request, over this key's {limit} {what}", 0)
        if self.breaker.usable():
            try:
                retry = self._charge_shared(key, window, amount, limit)
            except Exception as e:  # redis-py's ConnectionError, TimeoutError, ResponseError; an OSError
                self.breaker.failed(e)
            else:
                self.breaker.succeeded()
                if retry:
                    raise QuotaExceeded(f"over this key's limit of {limit} {what}; retry after {retry} s", retry)
                return
        if self.fail == "open":
            return super().charge(key, window, amount, limit)
        raise QuotaExceeded(
            f"the quota store is unreachable, so requests with a limit are refused for now; retry after "
            f"{UNREACHABLE_RETRY} s",
            UNREACHABLE_RETRY,
        )

    def _charge_shared(self, key: KeyLimits, window: str, amount: int, limit: int) -> int:
        """0 when `amount` was added to the key's usage in Redis, else the seconds until it may pass."""
        from limits import RateLimitItemPerSecond

        moving, fixed = self.limiters()
        length = self.windows.minute if window == MINUTE else self.windows.day
        item = RateLimitItemPerSecond(limit, max(1, round(length)))
        ident = key_id(key.key)
        if window == MINUTE:
            if moving.hit(item, ident, window):  # atomic in Redis: adds nothing when over the limit
                return 0
            reset_at = moving.get_window_stats(item, ident, window).reset_time
        else:
            if fixed.hit(item, ident, window, cost=amount):
                return 0
            # limits' fixed window counts the refused amount too: give it back, so a smaller request that fits
            # still passes (in the meantime the count errs on the side of refusing, never of granting)
            fixed.storage.incr(item.key_for(ident, window), item.get_expiry(), amount=-amount)
            reset_at = fixed.get_window_stats(item, ident, window).reset_time
        return max(1, math.ceil(reset_at - time.time()))


# ----- the request path --------------------------------------------------------------------------------------------

_current: contextvars.ContextVar[tuple[Keys, KeyLimits] | None] = contextvars.ContextVar("nmt_quota_key", default=None)


async def admit(keys: Keys, value: str | bytes | None, count_request: bool) -> KeyLimits:
    """The request's key, checked (serve.auth.authenticate: MissingKey, UnknownKey) and charged one request per
    minute when `count_request` (QuotaExceeded over the limit); it is then the current request's key for
    `charge_characters`. Every route's key check is this call."""
    key = await authenticate(keys, value)
    if count_request and key.requests_per_minute is not None:
        await run(keys, keys.charge, key, MINUTE, 1, key.requests_per_minute)
    _current.set((keys, key))
    return key


async def charge_characters(characters: int) -> None:
    """Charge the current request's key for `characters` characters of its day (no-op without a key or a limit).
    Raises QuotaExceeded."""
    current = _current.get()
    if current is not None and current[1].characters_per_day is not None:
        keys, key = current
        await run(keys, keys.charge, key, DAY, characters, key.characters_per_day)


def charging_characters(submit: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """`submit` (serve.litserve_glue) that first charges the sentences of the work to the request's key: every
    route's texts, split and validated, pass here once before they are queued."""

    async def charged(work: Any) -> Any:
        await charge_characters(sum(len(sentence) for sentence in work.sentences))
        return await submit(work)

    return charged


# ----- set-up in the main process -------------------------------------------------------------------------------


def reload_on_sighup(store: QuotaStore, path: str) -> None:
    """SIGHUP re-reads the keys file into the store; a file with a mistake is logged and the old keys stay."""
    main_pid = os.getpid()

    def reload(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a forked HTTP process: the main process reloads for everyone
            return
        try:
            count = store.load(read_keys_file(path))
        except KeysFileError as e:
            logger.error("keys not reloaded, the previous keys stay in force: %s", e)
            return
        logger.info("keys reloaded from %s: %d key(s)", path, count)

    signal.signal(signal.SIGHUP, reload)
