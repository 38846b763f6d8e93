"""Argument types of the command-line options (`nmt`, `nmt serve`, `nmt bench`): one home for each."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{value}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{value}'") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return x


def positive_seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got '{value}'") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return x
