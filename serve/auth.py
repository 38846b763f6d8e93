"""API-key check shared by the ASGI middleware and the LitAPI's `authorize` dependency."""

import hmac
import string

KEY_MESSAGE = "missing or invalid API key (send it in the X-API-Key header)"  # 401 of the native routes
KEY_CHARACTERS = set(string.ascii_letters + string.digits + string.punctuation)


def check_key(key: str) -> str:
    """The key itself, or ValueError when it cannot travel in an HTTP header as is."""
    if not key or not set(key) <= KEY_CHARACTERS:
        raise ValueError("the API key must be non-empty printable ASCII without spaces")
    return key


def key_matches(given: str | bytes | None, expected: str) -> bool:
    """Constant-time comparison of the client's key (header value) with the server's; False when none was sent."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("latin-1", "replace")  # how Starlette decoded the header bytes
    return hmac.compare_digest(given, expected.encode("ascii"))
