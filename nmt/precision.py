"""Numeric precision: which fast number formats this machine has, and how training and search use them.

Training runs the forward pass and the loss under bf16 autocast (`torch.autocast`) while the weights, their
gradients and Adam's moments stay fp32. Search runs in one of `SEARCH_DTYPES`:
  fp32       as trained;
  bf16       under bf16 autocast: the LSTM (oneDNN), attention, readout and output layer in bf16;
  int8       row-wise dynamic int8 (`nmt.int8`) of the RNNs and every linear layer: each input row and each weight
             row has its own scale, the products sum in integers, so a sentence's answer does not depend on its
             batch (as in fp32 and bf16);
  int8+bf16  int8 RNNs and inner linear layers, the output layer (the 8,000-way softmax input) in bf16.
"auto" (the default of search) picks int8 on a CPU with int8 dot products (VNNI or AMX), bf16 where bf16 is fast
(a CPU without them, or a GPU that supports bf16) and fp32, exactly as before, anywhere else. Training's "auto" is
bf16 where bf16 is fast, else fp32. "Fast" on a CPU is measured, not read off its flags: a CPU can have
avx512_bf16 and still multiply bf16 slower than fp32 (an Intel Xeon whose AMX the hypervisor hides: oneDNN's
avx512_core_bf16 kernels reach 0.5-0.7x of MKL's fp32 there), so bf16 counts as fast where its matrix products
run at least `BF16_MIN_SPEEDUP` times fp32's (`bf16_speedup`, about 0.3 s once per process).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from typing import TYPE_CHECKING, get_args

from nmt.config import SearchDtype, TrainPrecision
from nmt.errors import NMTError
from nmt.runtime import cpuinfo

if TYPE_CHECKING:
    import torch

    from nmt.model import Seq2Seq

TRAIN_PRECISIONS: tuple[str, ...] = get_args(TrainPrecision)
SEARCH_DTYPES: tuple[str, ...] = get_args(SearchDtype)
# What training's "auto" means where bf16 is native; fp32 wherever it is not.
AUTO_TRAIN = "bf16"
# bf16 over fp32 matmul throughput from which "auto" takes bf16 on a CPU: a training step has casts and other work
# bf16 does not speed up, so a smaller gain in products would buy little for the precision it gives up.
BF16_MIN_SPEEDUP = 1.5
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic
CPU_INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in hardware (oneDNN's int8 matmul)
# oneDNN primitives (compiled kernels) kept per cache; oneDNN's and PyTorch's default is 1,024 each
ONEDNN_CACHE_CAPACITY = 64
ONEDNN_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")  # oneDNN's; PyTorch's ideep


def bound_onednn_caches() -> None:
    """Cap the two caches of oneDNN primitives (oneDNN's own and PyTorch's ideep LRU), before their first use.

    bf16 matmuls and LSTMs run in oneDNN, which compiles a primitive for every new shape; a search meets new
    shapes with every batch (rows x source length). With the default 1,024 per cache a bf16 search process grew
    537 MB over 600 random batches and still grew; capped at 64 it stays flat, 18% slower on that workload
    (docs/performance.md). int8 matmuls (`torch._int_mm`) run in oneDNN too; fp32 ones in MKL, unaffected. A
    variable already set wins.
    """
    for name in ONEDNN_CACHE_VARIABLES:
        os.environ.setdefault(name, str(ONEDNN_CACHE_CAPACITY))


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    return frozenset(cpuinfo("flags").split())


def bf16_native(device: torch.device | str = "cpu") -> bool:
    """True where bf16 arithmetic runs in hardware: a CUDA GPU that supports it, or a CPU with avx512_bf16/AMX
    and a torch built with oneDNN (which then runs bf16 matmuls and LSTMs natively)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)


_measured_speedup: list[float] = []  # bf16_speedup's one measurement in this process


def bf16_speedup() -> float:
    """bf16 over fp32 matmul throughput of this CPU at the current thread setting: square 1,024 products, each
    precision timed three times in turn (so a change of load mid-way hits both), the best of each. Measured once per
    process; 0 where bf16 is not native."""
    if not _measured_speedup:
        from nmt.flops import measure_matmul_peak

        best = {"fp32": 0.0, "bf16": 0.0}
        if bf16_native("cpu"):
            for _ in range(3):
                for dtype in best:
                    best[dtype] = max(best[dtype], measure_matmul_peak(dtype, seconds=0.04, sizes=(1024,)))
        _measured_speedup.append(best["bf16"] / best["fp32"] if best["fp32"] else 0.0)
    return _measured_speedup[0]


def bf16_fast(device: torch.device | str = "cpu") -> bool:
    """True where "auto" should take bf16: a GPU that supports it, or a CPU whose bf16 products run at least
    `BF16_MIN_SPEEDUP` times its fp32 ones (measured)."""
    import torch

    device = torch.device(device)
    if not bf16_native(device):
        return False
    return device.type != "cpu" or bf16_speedup() >= BF16_MIN_SPEEDUP


def int8_native(device: torch.device | str = "cpu") -> bool:
    """True on a CPU with int8 dot-product instructions (VNNI, AMX), where row-wise int8 search is fastest."""
    import torch

    return torch.device(device).type == "cpu" and any(flag in cpu_flags() for flag in CPU_INT8_FLAGS)


def cpu_note() -> str:
    """Which of the fast formats' CPU flags this CPU has."""
    bf16 = [f for f in CPU_BF16_FLAGS if f in cpu_flags()]
    int8 = [f for f in CPU_INT8_FLAGS if f in cpu_flags()]
    return (f"native bf16: {', '.join(bf16)}" if bf16 else "no native bf16") + (
        f"; int8 dot products: {', '.join(int8)}" if int8 else "; no int8 dot products"
    )


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """The `--dtype` option of translate, evaluate, serve and bench translate."""
    parser.add_argument(
        "--dtype",
        choices=SEARCH_DTYPES,
        help="search precision: fp32, bf16, int8 (row-wise dynamic, CPU), int8+bf16 (int8 RNN, bf16 output layer), "
        "or auto (int8 on a CPU with int8 dot products, else bf16 where it is fast, else fp32); default: the "
        "model config's decode.dtype (auto)",
    )


def resolve_train_precision(requested: str, device: torch.device | str) -> str:
    """The training precision that runs: `requested`, with "auto" resolved for this machine."""
    if requested not in ("auto", "bf16"):
        return requested
    fast = bf16_fast(device)  # measured for an explicit bf16 too, so that the log says how fast it is here
    return requested if requested == "bf16" else (AUTO_TRAIN if fast else "fp32")


def resolve_search_dtype(requested: str, device: torch.device | str) -> str:
    """The search precision that runs: `requested`, with "auto" resolved; int8 is CPU-only."""
    import torch

    device = torch.device(device)
    if requested not in SEARCH_DTYPES:
        raise NMTError(f"unknown dtype '{requested}' (choose from {', '.join(SEARCH_DTYPES)})")
    if requested == "auto":
        if int8_native(device):
            return "int8"
        return "bf16" if bf16_fast(device) else "fp32"
    if requested.startswith("int8") and device.type != "cpu":
        raise NMTError(f"dtype {requested} (dynamic int8 quantization) runs on CPU only, not on {device}")
    return requested


def describe(precision: str, device: torch.device | str) -> str:
    """One log line: which precision runs, and whether bf16 is native here."""
    import torch

    device = torch.device(device)
    native = bf16_native(device)
    where = cpu_note() if device.type == "cpu" else ("bf16 supported" if native else "no bf16 support")
    slow = " (bf16 emulated: likely slower than fp32)" if "bf16" in precision and not native else ""
    if native and device.type == "cpu" and _measured_speedup:  # measured for "auto" (or by the caller): say what
        speed = _measured_speedup[0]
        slow += f" (bf16 matmuls measured at {speed:.2f}x fp32 here; auto takes bf16 from {BF16_MIN_SPEEDUP}x)"
    if precision.startswith("int8") and not int8_native(device):
        slow += " (no int8 dot products: likely slower than on a CPU with VNNI)"
    return f"precision {precision} on {device.type} ({where}){slow}"


def uses_autocast(precision: str) -> bool:
    """Whether `precision` runs under bf16 autocast (bf16, int8+bf16) rather than as the weights are (fp32, int8)."""
    return precision in ("bf16", "int8+bf16")


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """bf16 autocast for the precisions that use it; a no-op context for fp32 and int8."""
    import torch

    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_autocast(precision))


def prepare_for_search(model: Seq2Seq, dtype: str) -> Seq2Seq:
    """The model to search with in `dtype` (resolved): int8 quantizes a copy's layers (`nmt.int8`); the others are
    unchanged (bf16 comes from `autocast` around the search, so the fp32 weights stay the master copy)."""
    import copy

    from nmt import int8

    bound_onednn_caches()  # for library users; `nmt` sets them at start, and only the first setting counts
    if not dtype.startswith("int8"):
        return model
    keep = ("decoder.output",) if dtype == "int8+bf16" else ()  # in bf16 under autocast
    return int8.quantize(copy.deepcopy(model), keep=keep)
