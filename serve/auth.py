"""The API-key check: one place decides whether a request's key is accepted, for every route and every source of a
key (the `X-API-Key` header of the native routes, the `api_key` parameter of the LibreTranslate routes).

A key is printable ASCII without spaces, so the whitespace around a value is never part of it: RFC 9110 excludes a
header field's leading and trailing whitespace from its value, and the server strips it here, whichever HTTP
parser delivered the header (h11 keeps nothing, httptools may keep it) and in the body field alike. `k3y ` is the
key `k3y`; a value that is only whitespace is no key.

Two sets of keys answer `find`: one key (`nmt serve --api-key`, `SingleKey`) or a keys file with per-key limits
(`--keys`, serve.quota.QuotaStore; its usage counted in Redis with `--redis`, serve.quota.SharedQuotaStore). Both
compare the given key with every key in constant time.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from anyio import to_thread

from serve.keys import KeyLimits, check_key

KEY_REQUIRED = "an API key is required (send it in the X-API-Key header)"
KEY_MESSAGE = "missing or invalid API key (send it in the X-API-Key header)"  # 401 of the native routes, one key
KEY_UNKNOWN = "unknown API key"  # 403 of the native routes with a keys file


class MissingKey(Exception):
    """No key, or one that is empty or only whitespace."""


class UnknownKey(Exception):
    """A key that is not one of the server's."""


def given_key(value: str | bytes | None) -> bytes | None:
    """A client's key as bytes, without surrounding whitespace; None when absent, empty or only whitespace. A
    header arrives as bytes; a body field as text (a character beyond Latin-1 can match no key)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("latin-1", "replace")
    return value.strip() or None


def key_matches(given: bytes, expected: str) -> bool:
    """Constant-time comparison of a client's key (from `given_key`) with one of the server's."""
    return hmac.compare_digest(given, expected.encode("ascii"))


class Keys(Protocol):
    """The server's keys: `find` returns the one equal to `given` (or None) and `charge` counts its usage."""

    blocking: bool  # find and charge do I/O: run them in a thread

    def find(self, given: bytes) -> KeyLimits | None: ...

    def charge(self, key: KeyLimits, window: str, amount: int, limit: int | None) -> None: ...


class SingleKey:
    """`nmt serve --api-key`: one key without limits."""

    blocking = False
    unknown_status = 401

    def __init__(self, key: str):
        self.key = KeyLimits(check_key(key))

    def find(self, given: bytes) -> KeyLimits | None:
        return self.key if key_matches(given, self.key.key) else None

    def charge(self, key: KeyLimits, window: str, amount: int, limit: int | None) -> None:
        """No limits to count."""


async def run(keys: Keys, method, *args):
    """`keys.method(*args)`, in a worker thread where it blocks (a database or a network store)."""
    if keys.blocking:
        return await to_thread.run_sync(method, *args)
    return method(*args)


async def authenticate(keys: Keys, value: str | bytes | None) -> KeyLimits:
    """The server's key equal to the client's `value` (a header's bytes or a body field), or MissingKey or
    UnknownKey."""
    given = given_key(value)
    if given is None:
        raise MissingKey()
    key = await run(keys, keys.find, given)
    if key is None:
        raise UnknownKey()
    return key
