"""The keys file of `nmt serve --keys FILE`: one API key per line with its optional limits.

    # comment lines and blank lines are ignored; a "#" that starts a word starts a comment
    alice-2f8a9c requests_per_minute=60 characters_per_day=200000
    bob-77e1d0 requests_per_minute=10
    ci-runner-1                          # no limits

A key is printable ASCII without spaces (`check_key`) and may not start with "#". Any mistake (an unknown
option, a limit that is not a positive integer, a key twice) is a `KeysFileError` naming the file and the line.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from serve.jsonbody import shown

LIMIT_NAMES = ("requests_per_minute", "characters_per_day")
KEY_CHARACTERS = set(string.ascii_letters + string.digits + string.punctuation)


class KeysFileError(ValueError):
    """A keys file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class KeyLimits:
    """One key and its limits (None: unlimited)."""

    key: str
    requests_per_minute: int | None = None
    characters_per_day: int | None = None


def check_key(key: str) -> str:
    """The key itself, or ValueError when it cannot travel in an HTTP header as is."""
    if not key or not set(key) <= KEY_CHARACTERS:
        raise ValueError("the API key must be non-empty printable ASCII without spaces")
    return key


def _limit(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(f"expected a positive integer, got '{shown(value, 20)}'")
    return int(value)


def parse_keys(text: str, source: str = "keys file") -> list[KeyLimits]:
    """The keys of a keys file's text, in file order (`source` names it in errors)."""
    keys: list[KeyLimits] = []
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        for i, word in enumerate(words):
            if word.startswith("#"):
                words = words[:i]
                break
        if not words:
            continue
        where = f"{source}, line {number}"
        key, options = words[0], words[1:]
        try:
            check_key(key)
        except ValueError as e:
            raise KeysFileError(f"{where}: {e}") from None
        if key in lines:
            raise KeysFileError(f"{where}: the same key as on line {lines[key]}")
        limits: dict[str, int] = {}
        for option in options:
            name, equals, value = option.partition("=")
            if not equals or name not in LIMIT_NAMES:
                expected = " or ".join(f"{n}=N" for n in LIMIT_NAMES)
                raise KeysFileError(f"{where}: unknown option '{shown(option, 40)}' (expected {expected})")
            if name in limits:
                raise KeysFileError(f"{where}: {name} given twice")
            try:
                limits[name] = _limit(value)
            except ValueError as e:
                raise KeysFileError(f"{where}: {name}: {e}") from None
        lines[key] = number
        keys.append(KeyLimits(key, **limits))
    if not keys:
        raise KeysFileError(f"{source}: no keys (one key per line, optionally followed by its limits)")
    return keys


def read_keys_file(path: str | Path) -> list[KeyLimits]:
    """`parse_keys` of a file; a file that cannot be read is a KeysFileError too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or e.__class__.__name__
        raise KeysFileError(f"cannot read the keys file {path}: {reason}") from None
    return parse_keys(text, str(path))
