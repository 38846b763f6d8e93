"""Placeholder replaced by the serving work (issue 3)."""

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True)


def run_from_args(args: argparse.Namespace) -> int:
    raise SystemExit("nmt serve: not built yet")
