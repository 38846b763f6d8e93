"""The machine a figure was measured on (CPU, cores, torch threads): reported by the benchmarks and GET /info."""

from __future__ import annotations

import os
import platform
from typing import Any

from nmt.runtime import cpuinfo


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


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
