"""Process-wide settings the `nmt` command makes at start: OpenMP's idle spinning, MKL's reproducibility and glibc
malloc's thresholds.

Each applies to this process and, through the environment, to the processes it starts (the server's workers); a
setting the user already made in the environment wins.
"""

from __future__ import annotations

import ctypes
import os

# glibc malloc: blocks above the mmap threshold get fresh pages from the kernel on every allocation, and free
# memory above the trim threshold at the top of the heap goes back to it. Left to itself glibc raises the mmap
# threshold only up to 32 MiB, so a training step's (tokens, vocabulary) tensors (64 MB at 2,000 tokens x 8,000)
# and a beam step's (rows, vocabulary) ones (10 MB) are paged in anew each time: 74,000 page faults per training
# step of configs/multi30k_de_en.yaml, against 1,000 with both thresholds at 1 GiB (docs/performance.md).
MALLOC_THRESHOLD = 2**30
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt(3) parameters
# The mmap threshold first: glibc may refuse it, and the trim threshold alone pages in more, not less.
MALLOC_VARIABLES = {"MALLOC_MMAP_THRESHOLD_": M_MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": M_TRIM_THRESHOLD}


# libgomp's idle threads spin GOMP_SPINCOUNT times before sleeping (its default: 300,000). Measured on a 2-core
# Intel Xeon (docs/performance.md): with the cores to itself a process runs as fast at 10,000 as at the default,
# and 1,000 costs it 12% in training and 26-35% in search (threads asleep between the many small operations of a
# step); two training processes that share the cores run 2,541 target tokens/s together at 1,000, 1,697 at 10,000
# (a spinning thread holds a core the other process needs); at the default, 242 on an AMD EPYC
# (docs/performance.md, settings per machine), where 1,000 had cost a process alone nothing.
SPINCOUNT_ALONE, SPINCOUNT_SHARED = 10_000, 1_000


def openmp_defaults(shares_cores: bool) -> None:
    """Set how long idle OpenMP threads spin (GNU libgomp, which CPU torch uses): SPINCOUNT_SHARED where this
    process shares the cores with others it knows of (torchrun workers, the server's inference workers),
    SPINCOUNT_ALONE otherwise. Must run before torch is imported; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT
    wins.
    """
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(SPINCOUNT_SHARED if shares_cores else SPINCOUNT_ALONE)


# MKL (torch's fp32 products on CPU) picks its kernels by the number of rows on Intel CPUs, so a row's result
# depended on the rows beside it: at the peer decoder's (rows, 768) x (768, 2,048), 1 row, 2-15 rows and 16 or more
# gave three different roundings (an Intel Xeon, model 207), which broke "a sentence's translation does not depend
# on its batch" in fp32. Strict conditional numerical reproducibility makes each row's result independent of the
# others, at the same speed (308-311 against 316 GFLOP/s on 2,048-square products). Not set on other CPUs, where MKL
# may fall back to its slow compatible code path.
MKL_CBWR = "AUTO,STRICT"


def mkl_defaults() -> None:
    """Set MKL_CBWR=AUTO,STRICT on an Intel CPU, before MKL's first product (it reads it once); a value the user
    set wins."""
    if "MKL_CBWR" not in os.environ and cpuinfo("vendor_id") == "GenuineIntel":
        os.environ["MKL_CBWR"] = MKL_CBWR


def cpuinfo(field: str) -> str:
    """The first CPU's `field` in Linux's /proc/cpuinfo (vendor_id, flags, ...); empty where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return ""


def malloc_defaults() -> bool:
    """Keep freed memory in the process for reuse (glibc only): both malloc thresholds at MALLOC_THRESHOLD.

    Set in this process with mallopt(3) and in the environment for the processes it starts. Does nothing where
    the C library is not glibc, or where the user set either variable or a glibc.malloc tunable. Returns whether
    it changed the thresholds.
    """
    if not _glibc() or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if any(name in os.environ for name in MALLOC_VARIABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    if not all(mallopt(param, MALLOC_THRESHOLD) for param in MALLOC_VARIABLES.values()):
        return False
    os.environ.update(dict.fromkeys(MALLOC_VARIABLES, str(MALLOC_THRESHOLD)))
    return True


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False
