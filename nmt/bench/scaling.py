"""`nmt bench scaling`: throughput against batch size and source length, memory against beam size."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nmt.bench.common import (
    DEFAULT_TEST_SPLIT,
    default_test_files,
    machine_info,
    machine_line,
    positive_int,
    print_lines,
    write_json,
)

_MEMORY_PROBE = """
import json, sys
from pathlib import Path
from nmt.prediction import Translator

def status_mib(field):  # VmRSS (now) or VmHWM (peak since the last reset), from /proc/self/status
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024

model, beam, batch, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t = Translator.from_run_dir(model)
t.translate(["warm-up"], beam_size=beam)
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS: loading peaks higher
before = status_mib("VmRSS")
t.translate(Path(src).read_text(encoding="utf-8").splitlines(), beam_size=beam, batch_size=batch)
print(json.dumps({"loaded_mib": before, "peak_mib": status_mib("VmHWM")}))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory of a trained model")
    p.add_argument("--input", help=f"source sentences (default: $NMT_DATA_DIR/{DEFAULT_TEST_SPLIT}.<source language>)")
    p.add_argument("--beam-size", type=positive_int, default=5, help="beam size for the batch and length sweeps")
    p.add_argument("--sentences", type=positive_int, default=256, help="sentences per batch-size point (default 256)")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 2, 4, 8, 16, 32, 64, 128, 256], help="e.g. 1,8,64")
    p.add_argument("--beam-sizes", type=_int_list, default=[1, 2, 5, 10, 20], help="for the memory sweep")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: one per core)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.add_argument("--plot", help="write the three curves to this PNG file")
    p.set_defaults(func=bench_scaling)


def _int_list(value: str) -> list[int]:
    try:
        values = [int(v) for v in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{value}'") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got '{value}'")
    return values


def _rate(translator, sentences: list[str], beam: int, batch: int) -> float:
    start = time.perf_counter()
    translator.translate(sentences, beam, batch_size=batch)
    return len(sentences) / (time.perf_counter() - start)


def bench_scaling(args: argparse.Namespace) -> int:
    """Throughput against batch size and source length, peak memory against beam size."""
    import tempfile

    import torch

    from nmt.data import read_lines
    from nmt.prediction import Translator

    if args.threads:
        torch.set_num_threads(args.threads)
    src_path = Path(args.input) if args.input else default_test_files(args.model)[0]
    sentences = [s for s in read_lines(src_path) if s.strip()]
    translator = Translator.from_run_dir(args.model)
    translator.translate(sentences[:8], args.beam_size)  # warm-up
    sample = (sentences * (args.sentences // len(sentences) + 1))[: args.sentences]
    by_batch = [
        {"batch_size": b, "sentences_per_s": round(_rate(translator, sample, args.beam_size, b), 1)}
        for b in args.batch_sizes
    ]
    lengths = [len(ids) for ids in translator.src_tokenizer.encode(sentences)]
    by_length = []
    for low, high in ((1, 10), (11, 15), (16, 20), (21, 30), (31, 1000)):
        bucket = [s for s, n in zip(sentences, lengths, strict=True) if low <= n <= high]
        if bucket:
            rate = _rate(translator, bucket, args.beam_size, 64)
            by_length.append(
                {
                    "source_tokens": f"{low}-{high}" if high < 1000 else f"{low}+",
                    "sentences": len(bucket),
                    "sentences_per_s": round(rate, 1),
                    "ms_per_sentence": round(1000 / rate, 2),
                }
            )
    by_beam = []
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write("\n".join(sample) + "\n")
        f.flush()
        for beam in args.beam_sizes:
            out = subprocess.run(
                [sys.executable, "-c", _MEMORY_PROBE, args.model, str(beam), "64", f.name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            probe = json.loads(out)
            by_beam.append(
                {
                    "beam_size": beam,
                    "peak_mib": round(probe["peak_mib"], 1),
                    "search_mib": round(probe["peak_mib"] - probe["loaded_mib"], 1),
                }
            )
    report = {
        "benchmark": "scaling",
        "model": str(args.model),
        "beam_size": args.beam_size,
        "by_batch_size": by_batch,
        "by_source_length": by_length,
        "memory_by_beam_size": by_beam,
        "machine": machine_info(),
    }
    lines = [
        "batch size -> sentences/s: " + ", ".join(f"{r['batch_size']}: {r['sentences_per_s']}" for r in by_batch),
        "source tokens -> sentences/s: "
        + ", ".join(f"{r['source_tokens']}: {r['sentences_per_s']}" for r in by_length),
        "beam size -> peak MiB (search): "
        + ", ".join(f"{r['beam_size']}: {r['peak_mib']} ({r['search_mib']})" for r in by_beam),
        machine_line(report["machine"]),
    ]
    print_lines(*lines)
    if args.plot:
        _plot_scaling(report, Path(args.plot))
    write_json(args.json, report)
    return 0


def _plot_scaling(report: dict[str, Any], path: Path) -> None:
    from nmt.plot import pyplot, save_png

    fig, axes = pyplot().subplots(1, 3, figsize=(14, 4))
    b = report["by_batch_size"]
    axes[0].plot([r["batch_size"] for r in b], [r["sentences_per_s"] for r in b], "o-")
    axes[0].set(
        xscale="log",
        xlabel="batch size (sentences)",
        ylabel="sentences/s",
        title=f"throughput, beam {report['beam_size']}",
    )
    n = report["by_source_length"]
    axes[1].bar([r["source_tokens"] for r in n], [r["ms_per_sentence"] for r in n])
    axes[1].set(xlabel="source length (subword tokens)", ylabel="ms per sentence", title="cost by source length")
    m = report["memory_by_beam_size"]
    axes[2].plot([r["beam_size"] for r in m], [r["search_mib"] for r in m], "o-")
    axes[2].set(xlabel="beam size", ylabel="MiB above the loaded model", title="search memory (batch 64)")
    for ax in axes:
        ax.grid(alpha=0.3)
    save_png(fig, path)
