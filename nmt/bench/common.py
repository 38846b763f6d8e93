"""Shared pieces of the benchmarks: argument types, the machine description, percentiles, output."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from nmt.cli_types import API_KEY_ENV, positive_int, positive_seconds  # noqa: F401 (the benchmarks' options)
from nmt.config import DataConfig
from nmt.errors import NMTError
from nmt.machine import cpu_model, machine_info  # noqa: F401 (re-exported for the benchmarks)

DEFAULT_TEST_SPLIT = DataConfig.model_fields["test_split"].default  # the test split's file name in NMT_DATA_DIR


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
