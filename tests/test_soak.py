"""`nmt bench soak`: a bounded soak of `nmt serve` (the CI version: 16 clients for 10 s on the tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_nmt

from nmt.bench.soak import process_tree, resident_bytes, soak_failures

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")


@pytest.mark.slow
def test_soak_16_clients_for_10_s(tiny_run, tmp_path):
    out = tmp_path / "soak.json"
    result = run_nmt(
        "bench", "soak", "--model", tiny_run, "--concurrency", "16", "--duration", "10", "--warmup", "2",
        "--max-growth-mb", "32", "--json", out, timeout=300,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["failures"] == [], report["failures"]
    assert report["errors"] == report["warmup_errors"] == 0
    assert report["requests"] >= 100 and report["concurrency"] == 16 and report["seconds"] >= 10
    ms = report["latency_ms"]
    assert 0 < ms["p50"] <= ms["p95"] <= ms["p99"] <= ms["max"]
    memory = report["memory_mb"]
    assert memory["processes"] >= 4  # main, multiprocessing manager, uvicorn, inference worker
    assert 100 < memory["idle"] <= memory["start"] and memory["end"] <= memory["peak"]
    assert memory["growth"] == pytest.approx(memory["end"] - memory["start"], abs=0.15)
    assert len(report["memory_samples"]) >= 8
    assert report["server_exit_status"] == 0 and report["server_log_problems"] == []
    assert "soak passed" in result.stdout and "growth" in result.stdout


@pytest.mark.slow
def test_soak_fails_on_errors(tiny_run, tmp_path):
    log = tmp_path / "server.log"
    result = run_nmt(
        "bench", "soak", "--model", tiny_run, "--concurrency", "2", "--duration", "1", "--warmup", "0.5",
        "--beam-size", "99", "--server-log", log, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert "soak FAILED" in result.stdout and "HTTP 422" in result.stdout
    assert f"server log: {log}" in result.stderr and "POST /predict 422" in log.read_text()


def test_soak_needs_a_run_directory(tmp_path):
    result = run_nmt("bench", "soak", "--model", tmp_path, check=False)
    assert result.returncode == 2 and "not a run directory" in result.stderr


def _report(**changes) -> dict:
    report = {
        "errors": 0, "warmup_errors": 0, "error_kinds": {}, "warmup_error_kinds": {}, "requests": 10,
        "memory_mb": {"growth": 3.0}, "max_growth_mb": 32.0, "server_exit_status": 0, "server_log_problems": [],
    }  # fmt: skip
    return report | changes


def test_soak_verdict():
    assert soak_failures(_report()) == []
    assert soak_failures(_report(memory_mb={"growth": 32.5})) == [
        "resident memory grew by 32.5 MB, over the bound of 32 MB"
    ]
    failures = soak_failures(
        _report(errors=2, warmup_errors=1, error_kinds={"HTTP 504": 2}, warmup_error_kinds={"X": 1})
    )
    assert failures == ["3 failed requests {'HTTP 504': 2, 'X': 1}"]
    assert "exit status -9" in soak_failures(_report(server_exit_status=-9))[0]
    assert "Traceback" in soak_failures(_report(server_log_problems=["Traceback (most recent call last):"]))[0]
    assert soak_failures(_report(requests=0)) == ["no request succeeded"]


def test_process_tree_memory():
    child = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (64 << 20); time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while resident_bytes([child.pid]) < 64 << 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert resident_bytes([child.pid]) > 64 << 20  # the child's 64 MiB of b"x" are resident
        tree = process_tree(os.getpid())
        assert tree[0] == os.getpid() and child.pid in tree
        assert resident_bytes(tree) > resident_bytes([os.getpid()])
    finally:
        child.kill()
        child.wait()
    assert resident_bytes([child.pid]) == 0
