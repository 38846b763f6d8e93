import os
import subprocess
import sys

import pytest

from nmt.cli import main
from nmt.runtime import MALLOC_THRESHOLD, MALLOC_VARIABLES, _glibc, malloc_defaults

glibc_only = pytest.mark.skipif(not _glibc(), reason="glibc malloc only")

# Page faults of training-like steps: (tokens, 8,000) tensors of 58-67 MB, above the 32 MiB up to which glibc
# raises its own mmap threshold, so with glibc's thresholds every step maps them anew (about 120,000 faults per
# round); with nmt's the heap keeps them once it has grown (0 after at most 4 rounds, measured).
FAULTS = """
import resource, sys, torch
from nmt.runtime import malloc_defaults
if sys.argv[1] == "nmt":
    assert malloc_defaults()
def rounds(n):
    for _ in range(n):
        for tokens in (2000, 1900, 2100, 1800):
            torch.log_softmax(torch.randn(tokens, 8000), -1).topk(10, -1)
rounds(5)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(3)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARIABLES and k != "GLIBC_TUNABLES"}
    run = subprocess.run([sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True)
    return int(run.stdout)


@glibc_only
def test_malloc_defaults_reuse_freed_memory_instead_of_paging_it_in_again():
    glibc, nmt = _faults("glibc"), _faults("nmt")
    assert glibc > 100_000  # about 365,000 measured (glibc 2.36)
    assert nmt < glibc // 10  # 0 measured


@glibc_only
def test_the_nmt_command_sets_the_thresholds_for_the_processes_it_starts(monkeypatch):
    for name in MALLOC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert all(os.environ[name] == str(MALLOC_THRESHOLD) for name in MALLOC_VARIABLES)


@glibc_only
@pytest.mark.parametrize("user", [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}])
def test_a_users_malloc_setting_wins(monkeypatch, user):
    for name in MALLOC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    assert not malloc_defaults()
    assert {name: os.environ.get(name) for name in MALLOC_VARIABLES} == {
        name: user.get(name) for name in MALLOC_VARIABLES
    }


def test_mkl_reproducibility_is_set_on_intel_only_and_a_user_setting_wins(monkeypatch):
    from nmt import runtime

    for vendor, expected in (("GenuineIntel", runtime.MKL_CBWR), ("AuthenticAMD", None)):
        monkeypatch.delenv("MKL_CBWR", raising=False)
        monkeypatch.setattr(runtime, "cpuinfo", lambda field, v=vendor: v)
        runtime.mkl_defaults()
        assert os.environ.get("MKL_CBWR") == expected
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    monkeypatch.setattr(runtime, "cpuinfo", lambda field: "GenuineIntel")
    runtime.mkl_defaults()
    assert os.environ["MKL_CBWR"] == "AVX2"


@pytest.mark.parametrize(
    ("argv", "env", "shared"),
    [
        (["translate", "--model", "m"], {}, False),
        (["train", "--config", "c.yaml"], {}, False),
        (["train", "--config", "c.yaml"], {"LOCAL_WORLD_SIZE": "2"}, True),
        (["serve", "--model", "m"], {}, False),
        (["serve", "--model", "m", "--workers", "2"], {}, True),
    ],
)
def test_openmp_threads_spin_briefly_only_where_the_commands_processes_share_the_cores(monkeypatch, argv, env, shared):
    from nmt import runtime
    from nmt.cli import build_parser, shares_cores

    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runtime.openmp_defaults(shares_cores(build_parser(argv[0]).parse_args(argv)))
    expected = runtime.SPINCOUNT_SHARED if shared else runtime.SPINCOUNT_ALONE
    assert os.environ["GOMP_SPINCOUNT"] == str(expected)


@pytest.mark.parametrize("user", [{"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "passive"}])
def test_a_users_openmp_setting_wins(monkeypatch, user):
    from nmt import runtime

    for name in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    runtime.openmp_defaults(shares_cores=False)
    assert os.environ.get("GOMP_SPINCOUNT") == user.get("GOMP_SPINCOUNT")
