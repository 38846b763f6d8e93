"""`nmt bench data`: the data pipeline on a large corpus (the local training split repeated to N pairs).

Three starts of `nmt train`'s `Run`, each in a fresh process as a user would start them, each up to its first
optimizer step: a first start (cold caches: reading the text into Arrow, SentencePiece, tokenizing), a second run on
the same data into another run directory (the caches found again), and a resume of the first run from a checkpoint.
Each step's time and peak resident memory (VmHWM, reset before it: reading the text, cleaning, SentencePiece,
tokenizing), the largest peak of the processes that tokenize beside the main one, and the time to build one epoch's
batches. This measures the pipeline, not translation quality.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import threading
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


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the tokenizing pool's, once it is closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _AnonPeak:
    """The peak of RssAnon (memory of the process's own: RSS less the pages of memory-mapped files, which the
    kernel may drop at any time), sampled every 50 ms by a thread; the kernel keeps no such peak."""

    def __init__(self) -> None:
        self.peak = _status_mib("RssAnon")
        self.stopped = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self.stopped.wait(0.05):
            self.peak = max(self.peak, _status_mib("RssAnon"))

    def reset(self) -> None:
        self.peak = _status_mib("RssAnon")


_ANON: _AnonPeak | None = None


class _Step:
    """Seconds, peak RSS and sampled peak RssAnon of the wrapped function (the peaks are reset before each call)."""

    def __init__(self, module, name: str):
        self.module, self.name, self.original = module, name, getattr(module, name)
        self.seconds, self.cpu_seconds, self.peak_mib, self.anon_mib = 0.0, 0.0, 0.0, 0.0
        setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        _reset_peak()
        if _ANON:
            _ANON.reset()
        start, cpu = time.perf_counter(), _cpu_seconds()
        try:
            return self.original(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += _cpu_seconds() - cpu
            self.peak_mib = max(self.peak_mib, _status_mib("VmHWM"))
            self.anon_mib = max(self.anon_mib, _status_mib("RssAnon"), _ANON.peak if _ANON else 0.0)

    def report(self) -> dict[str, float]:
        return {
            "seconds": round(self.seconds, 2),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "peak_rss_mib": round(self.peak_mib),
            "peak_anon_mib": round(self.anon_mib),
        }


def measure_start(config_path: str, overrides: list[str], run_dir: str, resume: bool, epochs: int) -> dict[str, Any]:
    """One start of a training run up to its first optimizer step (what `nmt train` does first), timed."""
    import nmt.token_cache
    import nmt.training
    from nmt.config import load_config

    global _ANON
    config = load_config(config_path, overrides)
    _ANON = _AnonPeak()
    steps = {
        "read_text": _Step(nmt.training, "load_split"),
        "cleaning": _Step(nmt.training, "clean_split"),
        "sentencepiece": _Step(nmt.token_cache, "train_sentencepiece"),
        "tokenize": _Step(nmt.training, "cached_tokenize"),
    }
    start, cpu = time.perf_counter(), _cpu_seconds()
    run = nmt.training.Run(config, Path(run_dir), resume=resume, show_progress=False)
    state = run.initial_state(resume)
    peak = _status_mib("VmHWM")  # since the last step's reset: building the model, loading the checkpoint
    _ANON.reset()
    begin = time.perf_counter()
    batches = run.epoch_batches(state.epoch)
    batch_s = time.perf_counter() - begin
    indices = state.next_batch(batches)
    run.train_step(indices, run.learning_rate(state, len(batches)))
    result: dict[str, Any] = {"seconds_to_first_step": round(time.perf_counter() - start, 2)}
    result["cpu_seconds_to_first_step"] = round(_cpu_seconds() - cpu, 2)
    result |= {name: step.report() for name, step in steps.items()}
    result["batches"] = {"per_epoch": len(batches), "seconds": round(batch_s, 2)}
    if not resume:
        for epoch in range(1, epochs):
            begin = time.perf_counter()
            run.epoch_batches(epoch)
            batch_s = max(batch_s, time.perf_counter() - begin)
        result["batches"]["seconds"] = round(batch_s, 2)  # the slowest of `epochs` epochs
        state.step_done(run.target_tokens(indices), 0.0, 0.0)
        run.checkpoint(state)
    peak = max(peak, _status_mib("VmHWM"), *(step.peak_mib for step in steps.values()))
    result["peak_rss_mib"] = round(peak)  # of the whole start (the main process)
    whole_anon = max(_ANON.peak, _status_mib("RssAnon"), *(step.anon_mib for step in steps.values()))
    result["peak_anon_mib"] = round(whole_anon)
    # the tokenizing pool's processes (forked: their peak counts the pages they share with the main process)
    result["workers_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    result["tokenize_workers"] = config.tokenizer.workers or nmt.token_cache.default_workers()
    result["pairs_kept"] = len(run.data.train_indices)
    run.close()
    return result


_CHILD = """
import json, sys
from nmt.bench.data import measure_start
config, overrides, run_dir, resume, epochs = json.loads(sys.argv[1])
print("RESULT " + json.dumps(measure_start(config, overrides, run_dir, resume, epochs)))
"""


def _start_in_child(config: str, overrides: list[str], run_dir: Path, resume: bool, epochs: int) -> dict[str, Any]:
    import json
    import subprocess
    import sys

    from nmt.errors import NMTError

    argument = json.dumps([config, overrides, str(run_dir), resume, epochs])
    proc = subprocess.run([sys.executable, "-c", _CHILD, argument], capture_output=True, text=True, env=os.environ)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise NMTError(f"bench data: the training start failed: {proc.stderr.strip()[-1000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


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
    from nmt.config import load_config
    from nmt.data import data_source
    from nmt.errors import NMTError

    config = load_config(args.config, args.set)
    kind, where = data_source(config.data)
    if kind != "local":
        raise NMTError("nmt bench data repeats a local corpus: set NMT_DATA_DIR or data.path")
    data = config.data
    corpus = work / "data"
    start = time.perf_counter()
    write_corpus(Path(where), corpus, data.src_lang, data.tgt_lang, args.pairs, data.train_split, data.valid_split)
    write_s = time.perf_counter() - start
    overrides = [*args.set, f"data.path={corpus}"] + ([f"train.threads={args.threads}"] if args.threads else [])
    phases: dict[str, Any] = {}
    for name, run_dir, resume in (("first_start", "a", False), ("second_run", "b", False), ("resume", "a", True)):
        phases[name] = _start_in_child(args.config, overrides, work / run_dir, resume, args.epochs)
        # what is measured so far, should a long run be stopped before the end
        write_json(args.json, {"benchmark": "data", "pairs": args.pairs, "partial": True, "phases": phases})
    cache_mib = sum(p.stat().st_size for p in (work / "cache").rglob("*") if p.is_file()) / 2**20
    first, second, resume = phases["first_start"], phases["second_run"], phases["resume"]
    report = {
        "benchmark": "data",
        "config": str(args.config),
        "overrides": args.set,
        "pairs": args.pairs,
        "pairs_within_length_limits": first["pairs_kept"],
        "corpus_mib": round(sum(p.stat().st_size for p in corpus.iterdir()) / 2**20),
        "write_corpus_seconds": round(write_s, 1),
        "tokenization_cache_mib": round(cache_mib),
        "phases": phases,
        "machine": machine_info(args.threads or config.train.threads),
    }

    def steps(phase: dict[str, Any]) -> str:
        return ", ".join(
            f"{name} {phase[name]['seconds']} s ({phase[name]['cpu_seconds']} s CPU, "
            f"peak {phase[name]['peak_rss_mib']:,} MiB, "
            f"anonymous {phase[name]['peak_anon_mib']:,} MiB)"
            for name in ("read_text", "cleaning", "sentencepiece", "tokenize")
        )

    print_lines(
        f"{args.config}: {args.pairs:,} pairs ({report['corpus_mib']:,} MiB of text), "
        f"{report['tokenization_cache_mib']:,} MiB of token ids in the cache",
        f"first start: {steps(first)}; first step after {first['seconds_to_first_step']} s, "
        f"peak RSS {first['peak_rss_mib']:,} MiB, anonymous {first['peak_anon_mib']:,} MiB "
        f"(tokenizing processes: {first['tokenize_workers']}, "
        f"peak {first['workers_peak_rss_mib']:,} MiB each at most)",
        f"batches: {first['batches']['per_epoch']:,} per epoch, built in {first['batches']['seconds']} s "
        f"(the slowest of {args.epochs} epochs)",
        f"second run (same data): {steps(second)}; first step after {second['seconds_to_first_step']} s, "
        f"peak RSS {second['peak_rss_mib']:,} MiB, anonymous {second['peak_anon_mib']:,} MiB",
        f"resume: first step after {resume['seconds_to_first_step']} s, peak RSS {resume['peak_rss_mib']:,} MiB, "
        f"anonymous {resume['peak_anon_mib']:,} MiB",
        machine_line(report["machine"]),
    )
    write_json(args.json, report)
    return 0
