"""Argument types of the command-line options (`nmt`, `nmt serve`, `nmt bench`): one home for each, and the
environment variables that stand in for options."""

from __future__ import annotations

import argparse
from collections.abc import Callable

API_KEY_ENV = "NMT_API_KEY"  # `nmt serve`'s key, and the key `nmt bench serve` and `nmt bench soak` send
PORT_ENV = "NMT_PORT"  # `nmt serve --port`'s default; also read by the Docker HEALTHCHECK


def _checked(convert: Callable[[str], float], ok: Callable[[float], bool], what: str, bound: str | None = None):
    """An argparse type: `convert` the text, then check it with `ok`; errors say `expected {what}` (`bound` when the
    number parses but is out of range)."""

    def parse(value: str):
        try:
            x = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{value}'") from None
        if not ok(x):
            raise argparse.ArgumentTypeError(f"expected {bound or what}, got {x if convert is int else value}")
        return x

    return parse


positive_int = _checked(int, lambda n: n >= 1, "a positive integer")
non_negative_int = _checked(int, lambda n: n >= 0, "an integer >= 0")
fraction = _checked(float, lambda x: 0 <= x <= 1, "a number from 0 to 1")
positive_float = _checked(float, lambda x: x > 0, "a positive number")
positive_seconds = _checked(float, lambda x: x > 0, "a number of seconds", "a positive number of seconds")
