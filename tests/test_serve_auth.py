"""The API-key comparison of `nmt serve` (serve.auth), without a server: constant time, total on any header value."""

from __future__ import annotations

import hmac

import pytest

from serve import auth
from serve.auth import check_key, key_matches

KEY = "s3cret-Key!"


def test_key_is_compared_with_hmac_compare_digest(monkeypatch):
    """Constant time: the comparison is hmac.compare_digest on bytes, whatever the length or prefix of the guess."""
    calls, compare = [], hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert key_matches(KEY, KEY)
    assert not key_matches("s", KEY)
    assert not key_matches(b"s3cret-Key?", KEY)
    assert calls == [(KEY.encode(), KEY.encode()), (b"s", KEY.encode()), (b"s3cret-Key?", KEY.encode())]


@pytest.mark.parametrize(
    "header",
    [None, "", KEY[:-1], KEY + " ", " " + KEY, KEY.upper(), KEY + "\x00", "s3cret-Kéy!", "s3cret-Key\u263a",
     "\ud800", b"\xff\xfe", KEY.encode() + b"\x80", "x" * 10_000],
)  # fmt: skip
def test_wrong_header_values_are_a_clean_no(header):
    """Any value a client can send (str as Starlette decodes it, raw bytes, none): False, never an exception."""
    assert key_matches(header, KEY) is False


def test_right_key_as_str_or_bytes():
    assert key_matches(KEY, KEY) is True and key_matches(KEY.encode(), KEY) is True


@pytest.mark.parametrize("key", ["", "has space", "tab\there", "umlaut-ä", "new\nline"])
def test_unusable_server_keys_are_refused(key):
    with pytest.raises(ValueError, match="printable ASCII"):
        check_key(key)
