"""`nmt bench soak`: start `nmt serve`, load it for a while, check errors, memory growth and shutdown."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from nmt.bench.common import (
    API_KEY_ENV,
    DEFAULT_TEST_SPLIT,
    positive_int,
    positive_seconds,
)
from nmt.bench.serve import Tally, read_sentences, run_load, serve_report, server_info
from nmt.errors import NMTError

SOAK_MAX_GROWTH_MB = 64.0  # default bound on the server's resident memory growth during the measured load
LOG_PROBLEMS = ("Traceback", " ERROR ", " - ERROR - ", "Exception in ASGI application")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory of the model to serve")
    p.add_argument("--concurrency", type=positive_int, default=16, help="client threads, one request at a time each")
    p.add_argument("--duration", type=positive_seconds, default=10.0, help="seconds of measured load (default: 10)")
    p.add_argument(
        "--warmup",
        type=positive_seconds,
        default=3.0,
        help="seconds of the same load before memory at start (default: 3)",
    )
    p.add_argument("--texts-per-request", type=positive_int, default=1, help="1 sends 'text', more send 'texts'")
    p.add_argument("--beam-size", type=positive_int, help="beam size of every request (default: the server's)")
    p.add_argument(
        "--input", help=f"sentences, one per line (default: $NMT_DATA_DIR/{DEFAULT_TEST_SPLIT}.<source language>)"
    )
    p.add_argument(
        "--max-growth-mb",
        type=float,
        default=SOAK_MAX_GROWTH_MB,
        help=f"fail when the server's resident memory grows more during the load (default: {SOAK_MAX_GROWTH_MB:g})",
    )
    p.add_argument(
        "--server-args", default="--threads 1", help="more `nmt serve` options, one string (default: '--threads 1')"
    )
    p.add_argument("--server-log", help="write the server's log here (default: a temporary file, kept on failure)")
    p.add_argument("--timeout", type=positive_seconds, default=60.0, help="seconds per request (default: 60)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=bench_soak)


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def resident_bytes(pids: list[int]) -> int:
    """Sum of the resident set sizes of `pids` (/proc/PID/statm); a process that has exited counts 0."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
    return total


class SoakServer:
    """`nmt serve` on a free localhost port in its own process group, its output in `log_path`."""

    def __init__(self, model: str, server_args: list[str], log_path: Path):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "nmt", "serve", "--model", model, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), *server_args]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, session: Any, timeout: float = 180) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NMTError(f"nmt serve exited with status {self.proc.returncode} (log: {self.log_path})")
            try:
                if session.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise NMTError(f"nmt serve not ready after {timeout:g} s (log: {self.log_path})")

    def resident_mb(self) -> tuple[float, int]:
        """Resident memory of the server's process tree in MB, and its number of processes."""
        tree = process_tree(self.proc.pid)
        return resident_bytes(tree) / 2**20, len(tree)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGINT, as Ctrl+C; SIGKILL to the process group for whatever is left. The server's exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        status = self.proc.poll()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        return status


class _MemorySampler(threading.Thread):
    """Samples the server's resident memory every `interval` seconds until stopped."""

    def __init__(self, server: SoakServer, interval: float = 1.0):
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.samples.append((round(time.monotonic() - self.start_time, 1), round(self.server.resident_mb()[0], 1)))


def _soak_load(server: SoakServer, args: argparse.Namespace, headers: dict) -> dict[str, Any]:
    """Warm-up, then the measured load with memory samples: the report, less the server's exit status."""
    import requests

    with requests.Session() as session:
        session.headers.update(headers)
        server.wait_ready(session)
        info = server_info(session, server.url, args.timeout).get("model") or {}
    args.url, args.requests = server.url, None
    sentences = read_sentences(args, info.get("src_lang") or "de")
    idle_mb, processes = server.resident_mb()
    answers: dict[str, Any] = {}  # shared: an answer must not change between warm-up and load either
    warmup, _ = run_load(args, headers, sentences, args.warmup, Tally(answers=answers))
    start_mb, _ = server.resident_mb()
    sampler = _MemorySampler(server)
    sampler.start()
    tally, seconds = run_load(args, headers, sentences, args.duration, Tally(answers=answers))
    end_mb, _ = server.resident_mb()
    sampler.done.set()
    sampler.join()
    peak_mb = max([end_mb] + [mb for _, mb in sampler.samples])
    memory = {"idle": idle_mb, "start": start_mb, "end": end_mb, "peak": peak_mb, "growth": end_mb - start_mb}
    return serve_report(args, tally, seconds, info) | {
        "benchmark": "soak",
        "model": str(args.model),
        "server_args": args.server_args,
        "warmup_s": args.warmup,
        "warmup_errors": sum(warmup.errors.values()),
        "warmup_error_kinds": dict(warmup.errors),
        "memory_mb": {k: round(v, 1) for k, v in memory.items()} | {"processes": processes},
        "max_growth_mb": args.max_growth_mb,
        "memory_samples": sampler.samples,
    }


def bench_soak(args: argparse.Namespace) -> int:
    """Start `nmt serve`, load it for --warmup + --duration seconds, stop it; 1 on errors, memory growth, an unclean
    shutdown or errors in the server's log."""
    import shlex
    import tempfile

    if not Path("/proc/self/statm").exists():
        raise NMTError("bench soak measures memory through /proc (Linux)")
    if not (Path(args.model) / "config.yaml").is_file():
        raise NMTError(f"not a run directory: {args.model}")
    api_key = os.environ.get(API_KEY_ENV)  # the server reads the same variable
    headers = {"X-API-Key": api_key} if api_key else {}
    log_dir = None if args.server_log else Path(tempfile.mkdtemp(prefix="nmt-soak-"))
    log_path = Path(args.server_log) if args.server_log else log_dir / "server.log"
    server = SoakServer(args.model, shlex.split(args.server_args), log_path)
    try:
        report = _soak_load(server, args, headers)
    finally:
        exit_status = server.stop()
    log = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    report["server_exit_status"] = exit_status
    report["server_log_problems"] = [line for line in log if any(p in line for p in LOG_PROBLEMS)][:20]
    report["failures"] = soak_failures(report)
    _print_soak_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if report["failures"]:
        print(f"server log: {log_path}", file=sys.stderr)
        return 1
    if log_dir is not None:
        log_path.unlink()
        log_dir.rmdir()
    return 0


def soak_failures(report: dict[str, Any]) -> list[str]:
    """Why a soak report fails (empty: it passed)."""
    failures = []
    errors = report["errors"] + report["warmup_errors"]
    if errors:
        kinds = Counter(report["error_kinds"]) + Counter(report["warmup_error_kinds"])
        failures.append(f"{errors} failed requests {dict(kinds)}")
    if not report["requests"]:
        failures.append("no request succeeded")
    if report["memory_mb"]["growth"] > report["max_growth_mb"]:
        growth, bound = report["memory_mb"]["growth"], report["max_growth_mb"]
        failures.append(f"resident memory grew by {growth} MB, over the bound of {bound:g} MB")
    if report["server_exit_status"] != 0:
        failures.append(f"the server did not stop cleanly on SIGINT (exit status {report['server_exit_status']})")
    if report["server_log_problems"]:
        failures.append(f"errors in the server log: {report['server_log_problems'][0][:200]}")
    return failures


def _print_soak_report(report: dict[str, Any]) -> None:
    ms, memory = report["latency_ms"], report["memory_mb"]
    lines = [
        f"soak {report['model']} ({report['server_args']}): {report['concurrency']} clients, "
        f"{report['texts_per_request']} text(s) per request, beam {report['beam_size']}, "
        f"{report['warmup_s']:g} s warm-up + {report['seconds']} s",
        f"requests: {report['requests']} ok, {report['errors']} errors {report['error_kinds'] or ''}".rstrip(),
        f"throughput: {report['requests_per_s']} requests/s, {report['sentences_per_s']} sentences/s",
    ]
    if ms:
        lines.append(f"latency: p50 {ms['p50']} ms, p95 {ms['p95']} ms, p99 {ms['p99']} ms, max {ms['max']} ms")
    lines.append(
        f"server memory (RSS of {memory['processes']} processes): idle {memory['idle']} MB, "
        f"start {memory['start']} MB, end {memory['end']} MB, peak {memory['peak']} MB, growth {memory['growth']} MB "
        f"(bound {report['max_growth_mb']:g} MB)"
    )
    lines.append(f"server exit status after SIGINT: {report['server_exit_status']}")
    verdict = "passed" if not report["failures"] else "FAILED: " + "; ".join(report["failures"])
    lines.append(f"soak {verdict}")
    print("\n".join(lines), file=sys.stdout)
