"""`nmt bench data`: the data pipeline on a large corpus (the local training split repeated to N pairs).

Three starts of the real `Run` in one process, each with its peak resident memory (VmHWM, reset between phases):
a first start (cold caches: reading the text into Arrow, SentencePiece, tokenizing), a second run on the same data
into another run directory (the caches found again), and a resume of the first run from a checkpoint. Also the time
to build one epoch's batches. This measures the pipeline, not translation quality.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from nmt.bench.common import machine_info, machine_line, positive_int, print_lines, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config (its languages, tokenizer, model, batch size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--pairs", type=positive_int, default=3_000_000, help="corpus size (default: 3,000,000)")
    p.add_argument("--epochs", type=positive_int, default=2, help="epochs of batches to build (default: 2)")
    p.add_argument("--work-dir", help="corpus, caches and run directories here (default: a temporary directory)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: the config's)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=bench_data)


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS
    except OSError:
        pass


def write_corpus(source: Path, target: Path, src: str, tgt: str, pairs: int, train_split: str, valid: str) -> None:
    """`pairs` training pairs: the source directory's training split repeated (and cut), its validation split."""
    target.mkdir(parents=True, exist_ok=True)
    for lang in (src, tgt):
        lines = (source / f"{train_split}.{lang}").read_bytes().splitlines(keepends=True)
        full, rest = divmod(pairs, len(lines))
        block = b"".join(lines)
        with open(target / f"{train_split}.{lang}", "wb") as f:
            for _ in range(full):
                f.write(block)
            f.write(b"".join(lines[:rest]))
        shutil.copyfile(source / f"{valid}.{lang}", target / f"{valid}.{lang}")


class _Timer:
    """Seconds spent in the wrapped function, summed per phase."""

    def __init__(self, module, name: str):
        self.module, self.name, self.original = module, name, getattr(module, name)
        self.seconds = 0.0
        setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return round(seconds, 2)

    def restore(self) -> None:
        setattr(self.module, self.name, self.original)


def _start(config, run_dir: Path, resume: bool) -> tuple[Any, Any, float]:
    """A `Run` up to its first optimizer step, as `nmt train` does it; returns (run, state, seconds)."""
    from nmt.training import Run

    start = time.perf_counter()
    run = Run(config, run_dir, resume=resume, show_progress=False)
    state = run.initial_state(resume)
    batches = run.epoch_batches(state.epoch)
    indices = batches[state.batch_in_epoch]
    run.train_step(indices, run.learning_rate(state, len(batches)))
    state.batch_in_epoch += 1
    state.step_done(run.target_tokens(indices), 0.0, 0.0)
    return run, state, time.perf_counter() - start


def bench_data(args: argparse.Namespace) -> int:
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="nmt-bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    # Caches inside the work directory: cold at the first start, whatever the user's caches hold.
    os.environ["NMT_CACHE_DIR"] = str(work / "cache")
    os.environ["HF_DATASETS_CACHE"] = str(work / "hf-datasets")
    try:
        return _bench(args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, work: Path) -> int:
    import torch

    import nmt.token_cache
    import nmt.training
    from nmt.config import apply_overrides, config_from_dict, read_yaml
    from nmt.data import data_source
    from nmt.errors import NMTError

    raw = apply_overrides(read_yaml(args.config), args.set)
    config = config_from_dict(raw, args.config)
    kind, where = data_source(config.data)
    if kind != "local":
        raise NMTError("nmt bench data repeats a local corpus: set NMT_DATA_DIR or data.path")
    data = config.data
    corpus = work / "data"
    start = time.perf_counter()
    write_corpus(Path(where), corpus, data.src_lang, data.tgt_lang, args.pairs, data.train_split, data.valid_split)
    write_s = time.perf_counter() - start
    config = config_from_dict(apply_overrides(raw, [f"data.path={corpus}"]), args.config)
    if args.threads:
        config.train.threads = args.threads
    timers = {
        "read_text": _Timer(nmt.training, "load_split"),
        "sentencepiece": _Timer(nmt.token_cache, "train_sentencepiece"),
        "tokenize": _Timer(nmt.training, "cached_tokenize"),
    }
    phases: dict[str, dict[str, Any]] = {}
    try:
        for name, run_dir, resume in (("first_start", "a", False), ("second_run", "b", False), ("resume", "a", True)):
            _reset_peak()
            run, state, seconds = _start(config, work / run_dir, resume)
            phases[name] = {"seconds_to_first_step": round(seconds, 2)} | {k: t.take() for k, t in timers.items()}
            if name == "first_start":
                times = []
                for epoch in range(1, args.epochs + 1):
                    begin = time.perf_counter()
                    batches = run.epoch_batches(epoch)
                    times.append(time.perf_counter() - begin)
                phases[name]["batches_per_epoch"] = len(batches)
                phases[name]["batch_building_seconds_per_epoch"] = round(sum(times) / len(times), 2)
                run.checkpoint(state)
            phases[name]["peak_rss_mib"] = round(_status_mib("VmHWM"))
            phases[name]["anonymous_rss_mib"] = round(_status_mib("RssAnon"))  # what is not file-backed
            pairs_kept = len(run.data.train_indices)
            run.close()
    finally:
        for t in timers.values():
            t.restore()
    cache_mib = sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file()) / 2**20
    report = {
        "benchmark": "data",
        "config": str(args.config),
        "overrides": args.set,
        "pairs": args.pairs,
        "pairs_within_length_limits": pairs_kept,
        "corpus_mib": round(sum(p.stat().st_size for p in corpus.iterdir()) / 2**20),
        "write_corpus_seconds": round(write_s, 1),
        "tokenization_cache_mib": round(cache_mib),
        "phases": phases,
        "machine": machine_info(torch.get_num_threads()),
    }
    first, second, resume = phases["first_start"], phases["second_run"], phases["resume"]
    print_lines(
        f"{args.config}: {args.pairs:,} pairs ({report['corpus_mib']:,} MiB of text), "
        f"{report['tokenization_cache_mib']:,} MiB of token ids in the cache",
        f"first start: read text {first['read_text']} s, SentencePiece {first['sentencepiece']} s, "
        f"tokenize {first['tokenize']} s; first step after {first['seconds_to_first_step']} s; "
        f"peak RSS {first['peak_rss_mib']:,} MiB",
        f"batches: {first['batches_per_epoch']:,} per epoch, built in {first['batch_building_seconds_per_epoch']} s",
        f"second run (same data): tokenize {second['tokenize']} s, SentencePiece {second['sentencepiece']} s; "
        f"first step after {second['seconds_to_first_step']} s; peak RSS {second['peak_rss_mib']:,} MiB",
        f"resume: first step after {resume['seconds_to_first_step']} s; peak RSS {resume['peak_rss_mib']:,} MiB",
        machine_line(report["machine"]),
    )
    write_json(args.json, report)
    return 0
