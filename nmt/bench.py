"""`nmt bench`: benchmarks, one sub-command and one function each (`serve`: load-test a running `nmt serve`;
`soak`: start a server, load it for a while, and check errors, memory growth and shutdown)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.errors import NMTError

API_KEY_ENV = "NMT_API_KEY"
DEFAULT_TEST_SPLIT = "test_2016_flickr"  # Multi30k test set, read from NMT_DATA_DIR


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{value}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _seconds(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got '{value}'") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return x


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bench` sub-commands (one sub-parser and one function per benchmark)."""
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    _add_serve_arguments(sub.add_parser("serve", help="load-test a running `nmt serve` over HTTP"))
    _add_soak_arguments(
        sub.add_parser("soak", help="start `nmt serve`, load it for a while, check errors, memory and shutdown")
    )


# ----- machine description (shared by all benchmarks and the server's /info) ---------------------------------------


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


# ----- bench serve ------------------------------------------------------------------------------------------------


def _add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="base URL of the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--concurrency", type=_positive, default=8, help="client threads, one request at a time each")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--duration", type=_seconds, help="run for this many seconds")
    amount.add_argument("--requests", type=_positive, help="send this many requests in all")
    p.add_argument("--texts-per-request", type=_positive, default=1, help="1 sends 'text', more send 'texts'")
    p.add_argument("--beam-size", type=_positive, help="beam size of every request (default: the server's)")
    p.add_argument(
        "--input", help=f"sentences, one per line (default: $NMT_DATA_DIR/{DEFAULT_TEST_SPLIT}.<source language>)"
    )
    p.add_argument("--api-key", help=f"X-API-Key to send (default: ${API_KEY_ENV})")
    p.add_argument("--timeout", type=_seconds, default=60.0, help="seconds per request (default: 60)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=bench_serve)


@dataclass
class _Tally:
    """Results shared by the client threads (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0
    latencies: list[float] = field(default_factory=list)
    sentences: int = 0
    errors: Counter = field(default_factory=Counter)
    answers: dict[str, Any] | None = None  # request body -> first translation(s) seen, when answers are compared

    def consistent(self, body: dict[str, Any], answer: dict[str, Any]) -> bool:
        """False when the same request got other translations before (scores may differ in the last digits)."""
        if self.answers is None:
            return True
        translations = answer.get("translation", answer.get("translations"))
        with self.lock:
            return self.answers.setdefault(json.dumps(body, sort_keys=True), translations) == translations

    def next_request(self, limit: int | None, deadline: float | None) -> int | None:
        with self.lock:
            if (limit is not None and self.issued >= limit) or (deadline is not None and time.monotonic() >= deadline):
                return None
            self.issued += 1
            return self.issued - 1


def _read_sentences(args: argparse.Namespace, src_lang: str) -> list[str]:
    if args.input:
        path = Path(args.input)
    else:
        data_dir = os.environ.get("NMT_DATA_DIR")
        if not data_dir:
            raise NMTError("bench serve needs --input FILE or NMT_DATA_DIR (for the Multi30k test set)")
        path = Path(data_dir) / f"{DEFAULT_TEST_SPLIT}.{src_lang}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NMTError(f"missing file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NMTError(f"cannot read {path}: {e}") from None
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise NMTError(f"no sentences in {path}")
    return sentences


def _server_info(session, url: str, timeout: float) -> dict[str, Any]:
    """GET /health and /info; NMTError when the server is not reachable, not ready or refuses the key."""
    import requests

    try:
        health = session.get(f"{url}/health", timeout=timeout)
        info = session.get(f"{url}/info", timeout=timeout)
    except requests.RequestException as e:
        raise NMTError(f"cannot reach the server at {url}: {e.__class__.__name__}") from None
    if health.status_code == 401:
        raise NMTError(f"{url} refused the API key (give --api-key or set {API_KEY_ENV})")
    if health.status_code != 200:
        raise NMTError(f"{url}/health answered {health.status_code}: the server is not ready")
    try:
        return info.json() if info.status_code == 200 else {}
    except ValueError:
        return {}


def request_body(sentences: list[str], index: int, per_request: int, beam_size: int | None) -> dict[str, Any]:
    """JSON body of request number `index`: the next `per_request` sentences, cycling through the input."""
    start = index * per_request
    texts = [sentences[(start + j) % len(sentences)] for j in range(per_request)]
    body: dict[str, Any] = {"text": texts[0]} if per_request == 1 else {"texts": texts}
    if beam_size is not None:
        body["beam_size"] = beam_size
    return body


def _client(args: argparse.Namespace, headers: dict, sentences: list[str], tally: _Tally, deadline: float | None):
    import requests

    with requests.Session() as session:
        while (index := tally.next_request(args.requests, deadline)) is not None:
            body = request_body(sentences, index, args.texts_per_request, args.beam_size)
            start = time.perf_counter()
            try:
                response = session.post(f"{args.url}/predict", json=body, headers=headers, timeout=args.timeout)
                ok, error = response.status_code == 200, f"HTTP {response.status_code}"
                if ok and not tally.consistent(body, response.json()):
                    ok, error = False, "another answer than before"
            except (requests.RequestException, ValueError) as e:  # ValueError: a 200 that is not JSON
                ok, error = False, e.__class__.__name__
            latency = time.perf_counter() - start
            with tally.lock:
                if ok:
                    tally.latencies.append(latency)
                    tally.sentences += args.texts_per_request
                else:
                    tally.errors[error] += 1


def run_load(
    args: argparse.Namespace, headers: dict, sentences: list[str], duration: float | None, tally: _Tally | None = None
) -> tuple[_Tally, float]:
    """`args.concurrency` client threads against `args.url` for `duration` seconds (or `args.requests` requests)."""
    tally = tally or _Tally()
    start = time.monotonic()
    deadline = start + duration if duration else None
    threads = [
        threading.Thread(target=_client, args=(args, headers, sentences, tally, deadline), daemon=True)
        for _ in range(args.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - start


def bench_serve(args: argparse.Namespace) -> int:
    """Send requests from `--concurrency` threads; report throughput, latency percentiles and errors."""
    import requests

    args.url = args.url.rstrip("/")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"X-API-Key": api_key} if api_key else {}
    with requests.Session() as session:
        session.headers.update(headers)
        info = _server_info(session, args.url, args.timeout).get("model") or {}
    sentences = _read_sentences(args, info.get("src_lang") or "de")
    tally, seconds = run_load(args, headers, sentences, args.duration)
    report = _serve_report(args, tally, seconds, info)
    _print_serve_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not tally.latencies:
        raise NMTError(f"no request succeeded ({dict(tally.errors)})")
    return 0


def _serve_report(args: argparse.Namespace, tally: _Tally, seconds: float, info: dict[str, Any]) -> dict[str, Any]:
    latencies = sorted(tally.latencies)
    ms = {f"p{q}": round(percentile(latencies, q) * 1000, 1) for q in (50, 95, 99)} if latencies else {}
    if latencies:
        ms["mean"] = round(sum(latencies) / len(latencies) * 1000, 1)
        ms["max"] = round(latencies[-1] * 1000, 1)
    return {
        "benchmark": "serve",
        "url": args.url,
        "concurrency": args.concurrency,
        "texts_per_request": args.texts_per_request,
        "beam_size": args.beam_size or (info.get("decode") or {}).get("beam_size"),
        "seconds": round(seconds, 2),
        "requests": len(latencies),
        "sentences": tally.sentences,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "sentences_per_s": round(tally.sentences / seconds, 2),
        "latency_ms": ms,
        "machine": machine_info(),
        "server": info.get("runtime"),
    }


def _print_serve_report(report: dict[str, Any]) -> None:
    ms, machine, server = report["latency_ms"], report["machine"], report["server"] or {}
    lines = [
        f"{report['url']}: {report['concurrency']} clients, {report['texts_per_request']} text(s) per request, "
        f"beam {report['beam_size']}, {report['seconds']} s",
        f"requests: {report['requests']} ok, {report['errors']} errors {report['error_kinds'] or ''}".rstrip(),
        f"throughput: {report['requests_per_s']} requests/s, {report['sentences_per_s']} sentences/s",
    ]
    if ms:
        lines.append(f"latency: p50 {ms['p50']} ms, p95 {ms['p95']} ms, p99 {ms['p99']} ms, max {ms['max']} ms")
    lines.append(
        f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads)"
    )
    if server:
        lines.append(
            f"server: {server.get('workers')} worker(s) x {server.get('threads_per_worker')} thread(s), "
            f"max batch {server.get('max_batch_size')}, batch timeout {server.get('batch_timeout')} s"
        )
    print("\n".join(lines), file=sys.stdout)


# ----- bench soak -------------------------------------------------------------------------------------------------

SOAK_MAX_GROWTH_MB = 64.0  # default bound on the server's resident memory growth during the measured load
LOG_PROBLEMS = ("Traceback", " ERROR ", " - ERROR - ", "Exception in ASGI application")


def _add_soak_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory of the model to serve")
    p.add_argument("--concurrency", type=_positive, default=16, help="client threads, one request at a time each")
    p.add_argument("--duration", type=_seconds, default=10.0, help="seconds of measured load (default: 10)")
    p.add_argument(
        "--warmup", type=_seconds, default=3.0, help="seconds of the same load before memory at start (default: 3)"
    )
    p.add_argument("--texts-per-request", type=_positive, default=1, help="1 sends 'text', more send 'texts'")
    p.add_argument("--beam-size", type=_positive, help="beam size of every request (default: the server's)")
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
    p.add_argument("--timeout", type=_seconds, default=60.0, help="seconds per request (default: 60)")
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
        info = _server_info(session, server.url, args.timeout).get("model") or {}
    args.url, args.requests = server.url, None
    sentences = _read_sentences(args, info.get("src_lang") or "de")
    idle_mb, processes = server.resident_mb()
    answers: dict[str, Any] = {}  # shared: an answer must not change between warm-up and load either
    warmup, _ = run_load(args, headers, sentences, args.warmup, _Tally(answers=answers))
    start_mb, _ = server.resident_mb()
    sampler = _MemorySampler(server)
    sampler.start()
    tally, seconds = run_load(args, headers, sentences, args.duration, _Tally(answers=answers))
    end_mb, _ = server.resident_mb()
    sampler.done.set()
    sampler.join()
    peak_mb = max([end_mb] + [mb for _, mb in sampler.samples])
    memory = {"idle": idle_mb, "start": start_mb, "end": end_mb, "peak": peak_mb, "growth": end_mb - start_mb}
    return _serve_report(args, tally, seconds, info) | {
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
