"""The cost of running `nmt serve` as replicas sharing Redis behind HAProxy (docs/deployment.md).

    .venv/bin/python benchmarks/cluster.py --model RUN_DIR [--seconds 15] [--clients 4] [--out FILE.json]

1. Requests per second and p50/p99 latency through HAProxy (deploy/haproxy.cfg on loopback) with 1, 2 and 3
   replicas, and straight to one replica without the balancer, with and without Redis; every request carries a
   key with limits (a quota check per request) and a sentence not seen before (a cache lookup, a translation and,
   with Redis, a write to the shared cache).
2. The per-call cost of a quota check (Redis, moving window, against the single-host sqlite store) and of a cache
   hit (the shared cache in Redis against a worker's own LRU).

Needs redis-server and haproxy (Debian packages). On one machine the replicas share its cores: the figures show
the overhead of the balancer and of Redis per request, not how a cluster of machines scales.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Processes:
    """Every process the benchmark starts, each in its own session; all stopped at the end."""

    def __init__(self, directory: Path):
        self.directory, self.procs = directory, []

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        with open(self.directory / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


def start_replica(
    procs: Processes, model: str, keys: Path, redis_url: str | None, name: str
) -> tuple[int, subprocess.Popen]:
    """A replica sharing `redis_url` (None: the single-host set-up, quotas in sqlite, a cache per worker)."""
    port = free_port()
    command = [sys.executable, "-m", "nmt", "serve", "--model", model, "--port", str(port), "--threads", "1",
               "--batch-timeout", "0.005", "--keys", str(keys), "--health-open", "--log-level", "warning"]  # fmt: skip
    command += ["--redis", redis_url] if redis_url else []
    proc = procs.start(name, command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return port, proc
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"replica {name} did not start: {procs.directory / name}.log")


def start_haproxy(procs: Processes, replicas: list[int]) -> tuple[int, subprocess.Popen]:
    port = free_port()
    text = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
    text = text.replace("bind :8000", f"bind 127.0.0.1:{port}").replace("log stdout format raw local0", "")
    servers = "".join(f"    server nmt-{i + 1} 127.0.0.1:{p}\n" for i, p in enumerate(replicas))
    text = re.sub(r"(    server nmt-\d+ nmt-\d+:8000\n)+", servers, text)
    config = procs.directory / f"haproxy-{len(replicas)}.cfg"
    config.write_text(text, encoding="utf-8")
    proc = procs.start(
        f"haproxy-{len(replicas)}", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)]
    )
    wait_port(port)
    time.sleep(1.5)  # the first health checks
    return port, proc


def load(url: str, key: str, clients: int, seconds: float, tag: str) -> dict:
    """`clients` threads, each with a keep-alive session, posting new sentences for `seconds`."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        nonlocal errors
        session = requests.Session()
        i = 0
        while time.monotonic() < deadline:
            text = f"Ein Mann {tag} {n} {i} fährt mit dem Fahrrad."
            i += 1
            started = time.perf_counter()
            try:
                ok = session.post(f"{url}/predict", json={"text": text}, headers={"X-API-Key": key}, timeout=30).ok
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed) if ok else None
                errors += not ok

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
        if latencies
        else None,
    }


def per_call(function, n: int) -> dict:
    """Mean and p99 of `function()` in microseconds over `n` calls (after 50 warm-up calls)."""
    for _ in range(50):
        function()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    times.sort()
    return {"mean_us": round(1e6 * statistics.fmean(times), 1), "p99_us": round(1e6 * times[int(n * 0.99)], 1)}


def micro(redis_url: str, n: int) -> dict:
    from serve.cache import SharedCache, TranslationCache
    from serve.keys import KeyLimits
    from serve.quota import MINUTE, QuotaStore, SharedQuotaStore

    key = KeyLimits("bench", 10**9, 10**12)
    local, shared = QuotaStore.create([key]), SharedQuotaStore.create([key], url=redis_url)
    cache, remote = TranslationCache(1000, 1 << 20), SharedCache(redis_url, ttl=600)

    class Hyp:
        text, score = "A man rides a bicycle.", -3.141592653589793

    cache_key = ("de-en|weights|lp=1.0|fp32", "Ein Mann fährt Fahrrad.", 5, 1, None)
    cache.put(cache_key, [Hyp()])
    redis_key = remote.key(*cache_key)
    remote.put_many({redis_key: [Hyp()]})
    try:
        return {
            "quota_check_sqlite": per_call(lambda: local.charge(key, MINUTE, 1, key.requests_per_minute), n),
            "quota_check_redis_moving_window": per_call(
                lambda: shared.charge(key, MINUTE, 1, key.requests_per_minute), n
            ),
            "cache_hit_worker_lru": per_call(lambda: cache.get(cache_key), n),
            "cache_hit_redis": per_call(lambda: remote.get_many([redis_key]), n),
        }
    finally:
        local.remove()
        shared.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained run directory (configs/tiny.yaml is enough)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per configuration (default: 15)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default: 4)")
    parser.add_argument("--calls", type=int, default=5000, help="calls per micro-benchmark (default: 5000)")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="nmt-cluster-bench-"))
    procs = Processes(directory)
    keys = directory / "keys.txt"
    keys.write_text("bench requests_per_minute=1000000000 characters_per_day=1000000000000\n", encoding="utf-8")
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    results: dict = {"cpu": cpu_model(), "cores": os.cpu_count(), "clients": args.clients, "seconds": args.seconds}
    try:
        procs.start("redis", [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(redis_port),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])  # fmt: skip
        wait_port(redis_port)
        results["micro"] = micro(redis_url, args.calls)
        print(json.dumps(results["micro"], indent=1), flush=True)
        port, single = start_replica(procs, args.model, keys, None, "single-host")
        results["direct_1_replica_without_redis"] = load(
            f"http://127.0.0.1:{port}", "bench", args.clients, args.seconds, "s"
        )
        print("direct, 1 replica without Redis:", results["direct_1_replica_without_redis"], flush=True)
        procs.stop(single)
        replicas = []
        for n in (1, 2, 3):
            replicas.append(start_replica(procs, args.model, keys, redis_url, f"replica-{n}"))
            if n == 1:
                direct = f"http://127.0.0.1:{replicas[0][0]}"
                results["direct_1_replica"] = load(direct, "bench", args.clients, args.seconds, "d")
                print("direct, 1 replica:", results["direct_1_replica"], flush=True)
            port, haproxy = start_haproxy(procs, [p for p, _ in replicas])
            results[f"haproxy_{n}_replicas"] = load(
                f"http://127.0.0.1:{port}", "bench", args.clients, args.seconds, f"h{n}"
            )
            print(f"haproxy, {n} replica(s):", results[f"haproxy_{n}_replicas"], flush=True)
            procs.stop(haproxy)
    finally:
        procs.stop_all()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
