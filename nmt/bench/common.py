"""Shared pieces of the benchmarks: argument types, the machine description, percentiles, output."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

from nmt.errors import NMTError

API_KEY_ENV = "NMT_API_KEY"
DEFAULT_TEST_SPLIT = "test_2016_flickr"  # Multi30k test set, read from NMT_DATA_DIR


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{value}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def positive_seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got '{value}'") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return x


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """CPU model, cores, torch version and threads (`threads` overrides this process's torch thread count)."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch": torch.__version__,
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0-100) of an ascending, non-empty list."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads)"
    )


def print_lines(*lines: str) -> None:
    print("\n".join(lines), file=sys.stdout)


def write_json(path: str | None, report: dict[str, Any]) -> None:
    if path:
        from nmt.files import atomic_write_json

        atomic_write_json(path, report)


def default_test_files(model_dir: str) -> tuple[Path, Path]:
    """The Multi30k test set of a model's languages (source, reference), from the model's data.path or NMT_DATA_DIR."""
    from nmt.bundle import read_run_config

    data = read_run_config(Path(model_dir)).data
    data_dir = data.path or os.environ.get("NMT_DATA_DIR")
    if not data_dir:
        raise NMTError("give --input FILE or set NMT_DATA_DIR (for the Multi30k test set)")
    base = Path(data_dir) / data.test_split
    return base.with_suffix(f".{data.src_lang}"), base.with_suffix(f".{data.tgt_lang}")
