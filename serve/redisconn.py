"""The Redis connection of `nmt serve --redis URL`: clients with short socket timeouts, and a breaker that decides
when a process stops and starts asking Redis again.

Redis carries the quota counters (serve.quota.SharedQuotaStore) and the shared translation cache
(serve.cache.SharedCache); neither may make a request wait on an unreachable or hung Redis. Every client here
gives up a command after `timeout` seconds (connect and read alike) and never retries it by itself; after a
failure the process leaves Redis alone for `RETRY_INTERVAL` seconds (requests take the fallback at once) and
then tries again with the next request, so recovery needs nothing from the operator. Each use ("quota",
"cache") logs one line when Redis becomes unreachable and one when it answers again, and exports
`nmt_redis_up{use}` and `nmt_redis_errors_total{use}` (serve.metrics).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from serve.logs import LOGGER

logger = logging.getLogger(LOGGER)

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_TIMEOUT = 0.25  # seconds per Redis command, connecting included
RETRY_INTERVAL = 1.0  # seconds a process leaves an unreachable Redis alone


def check_url(url: str) -> str:
    """The URL itself, or ValueError for one redis-py cannot use (redis://HOST:PORT/DB, rediss://, unix://)."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"--redis expects redis://HOST:PORT/DB (or rediss://, unix://), got '{url[:80]}'")
    import redis

    try:
        redis.connection.parse_url(url)
    except ValueError as e:
        raise ValueError(f"--redis {url[:80]}: {e}") from None
    return url


def client_options(timeout: float) -> dict[str, Any]:
    """redis-py options of every client: `timeout` seconds per command and per connect, no retries (a retry
    would multiply the time a request can wait), no health-check round trips."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
    }


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


class Breaker:
    """Whether this process asks Redis now: yes while it answers; after a failure, not again before
    `retry_interval` seconds have passed (then one request tries for everyone). Thread-safe."""

    def __init__(self, use: str, url: str, retry_interval: float = RETRY_INTERVAL):
        self.use, self.url, self.retry_interval = use, redacted(url), retry_interval
        self.up = True
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._exported = False  # nmt_redis_up set to 1 by this process

    def __getstate__(self) -> dict:
        return {"use": self.use, "url": self.url, "retry_interval": self.retry_interval}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["use"], state["url"], state["retry_interval"])

    def usable(self) -> bool:
        """True to ask Redis now; False to take the fallback at once."""
        if self.up:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_interval  # this caller probes; the others keep the fallback
            return True

    def failed(self, error: BaseException) -> None:
        """A command failed (connection refused or reset, timeout, an error answer)."""
        from serve import metrics

        metrics.redis_failed(self.use)
        with self._lock:
            self._retry_at = time.monotonic() + self.retry_interval
            was_up, self.up = self.up, False
        if was_up:
            logger.warning(
                "Redis unreachable for the %s at %s (%s: %s); %s; trying again every %g s",
                self.use,
                self.url,
                error.__class__.__name__,
                str(error)[:200],
                "quotas counted as --redis-fail says" if self.use == "quota" else "translating without it",
                self.retry_interval,
            )

    def succeeded(self) -> None:
        """A command answered."""
        if self.up and self._exported:
            return
        from serve import metrics

        with self._lock:
            was_up, self.up, self._exported = self.up, True, True
        metrics.redis_up(self.use, True)
        if not was_up:
            logger.info("Redis reachable again for the %s at %s", self.use, self.url)
