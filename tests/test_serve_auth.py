"""The API-key check of `nmt serve` (serve.auth), without a server: constant time, total on any value a client can
send, surrounding whitespace never part of a key."""

from __future__ import annotations

import asyncio
import hmac

import pytest

from serve import auth
from serve.auth import MissingKey, SingleKey, UnknownKey, authenticate, given_key, key_matches
from serve.keys import check_key

KEY = "s3cret-Key!"


def _check(value):
    return asyncio.run(authenticate(SingleKey(KEY), value))


def test_key_is_compared_with_hmac_compare_digest(monkeypatch):
    """Constant time: the comparison is hmac.compare_digest on bytes, whatever the length or prefix of the guess."""
    calls, compare = [], hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert key_matches(KEY.encode(), KEY)
    assert not key_matches(b"s", KEY)
    assert calls == [(KEY.encode(), KEY.encode()), (b"s", KEY.encode())]


@pytest.mark.parametrize(
    "value",
    [KEY[:-1], KEY.upper(), KEY + "\x00", "s3cret-Kéy!", "s3cret-Key\u263a", "\ud800", b"\xff\xfe",
     KEY.encode() + b"\x80", "x" * 10_000, KEY + " x", KEY[:4] + " " + KEY[4:]],
)  # fmt: skip
def test_wrong_keys_are_unknown(value):
    """Any value a client can send (a header's bytes, a body field's text): UnknownKey, never another exception."""
    with pytest.raises(UnknownKey):
        _check(value)


@pytest.mark.parametrize("value", [None, "", b"", " ", b"\t", " \t ", "\n"])
def test_no_key_or_only_whitespace_is_missing(value):
    with pytest.raises(MissingKey):
        _check(value)


@pytest.mark.parametrize(
    "value", [KEY, KEY.encode(), KEY + " ", " " + KEY, "\t" + KEY + "\t", b" " + KEY.encode() + b" \t", KEY + "\n"]
)
def test_surrounding_whitespace_is_not_part_of_the_key(value):
    """RFC 9110: a field value's leading and trailing whitespace is not part of it; the same for the body field,
    whatever the HTTP parser kept."""
    assert _check(value).key == KEY
    assert given_key(value) == KEY.encode()


@pytest.mark.parametrize("key", ["", "has space", "tab\there", "umlaut-ä", "new\nline", " lead"])
def test_unusable_server_keys_are_refused(key):
    with pytest.raises(ValueError, match="printable ASCII"):
        check_key(key)
    with pytest.raises(ValueError, match="printable ASCII"):
        SingleKey(key)
