"""`nmt bench`: benchmarks, one module and one sub-command each.

train: training throughput and FLOP/s; data: the data pipeline on a large corpus; translate: translation speed,
memory and BLEU; quality: train a config and score it on validation and test; scaling: cost against batch size,
source length and beam size; serve: load-test a running server; soak: start a server and load it for a while.
"""

from __future__ import annotations

import argparse

from nmt.bench import data, quality, scaling, serve, soak, train, translate

HELP = {
    "train": "training speed on the config's data: tokens/s and matmul FLOP/s against the machine's peak",
    "data": "the data pipeline on a large corpus: tokenizing (first and cached), memory, batches, start, resume",
    "translate": "translate a file as `nmt translate` does: sentences/s, load time, peak memory, BLEU",
    "quality": "train a config from scratch, then BLEU/chrF on validation and test, beam and greedy",
    "scaling": "throughput against batch size and source length, memory against beam size (table and PNG)",
    "serve": "load-test a running `nmt serve` over HTTP",
    "soak": "start `nmt serve`, load it for a while, check errors, memory and shutdown",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bench` sub-commands."""
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module in (
        ("train", train),
        ("data", data),
        ("translate", translate),
        ("quality", quality),
        ("scaling", scaling),
        ("serve", serve),
        ("soak", soak),
    ):
        module.add_arguments(sub.add_parser(name, help=HELP[name]))
