"""A real cluster on loopback: redis-server, two `nmt serve` replicas sharing it, and HAProxy in front running
deploy/haproxy.cfg (its server lines and port rewritten for 127.0.0.1, its checks every 250 ms). Through the
balancer: a key's quota holds across replicas exactly, a sentence translated by one replica is a shared-cache hit
on the other, a rolling restart under steady load fails no request, and a replica SIGKILLed under load loses none
(the balancer retries elsewhere; the last test: that replica stays down). Every loop is bounded in count and time."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import REPO
from server_process import ServerProcess, free_port
from system_programs import RedisServer, metric, metrics, program, wait_port

pytestmark = pytest.mark.slow

QUOTA = 20  # requests per minute of the key "quota"
KEYS = f"quota requests_per_minute={QUOTA}\nfree\n"
OPTIONS = ["--threads", "1", "--batch-timeout", "0.005", "--health-open", "--drain-delay", "0.75",
           "--drain-timeout", "15"]  # fmt: skip
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Ein Kind lacht.", "Eine Frau mit Hut.",
             "Ein Hund rennt über die Wiese.", "Drei Männer stehen vor einem Haus."]  # fmt: skip


def haproxy_config(port: int, replicas: list[int]) -> str:
    """deploy/haproxy.cfg on loopback: bound to 127.0.0.1:`port`, one server line per replica port."""
    text = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
    text = text.replace("bind :8000", f"bind 127.0.0.1:{port}").replace("inter 1s", "inter 250ms")
    servers = "".join(f"    server nmt-{i + 1} 127.0.0.1:{p}\n" for i, p in enumerate(replicas))
    text, count = re.subn(r"(    server nmt-\d+ nmt-\d+:8000\n)+", servers, text)
    assert count == 1, "deploy/haproxy.cfg: the server lines were not found"
    return text


class Cluster:
    """Redis, replicas on fixed ports (a restarted replica comes back where the balancer expects it), HAProxy."""

    def __init__(self, model: Path, directory: Path, replicas: int = 2):
        self.model, self.directory = model, directory
        self.redis = RedisServer(directory).start()
        self.keys = directory / "keys.txt"
        self.keys.write_text(KEYS, encoding="utf-8")
        self.ports = [free_port() for _ in range(replicas)]
        self.starts = Counter()
        self.replicas: list[ServerProcess] = [self._launch(i) for i in range(replicas)]
        for replica in self.replicas:
            replica.wait_ready()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, self.ports), encoding="utf-8")
        log = open(directory / "haproxy.log", "wb")  # noqa: SIM115 (closed once started)
        self.haproxy = subprocess.Popen([program("haproxy", "haproxy"), "-db", "-f", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        log.close()
        wait_port(self.port)

    def _launch(self, i: int) -> ServerProcess:
        self.starts[i] += 1
        log = self.directory / f"replica-{i + 1}.{self.starts[i]}.log"
        options = [*OPTIONS, "--keys", str(self.keys), "--redis", self.redis.url]
        return ServerProcess(self.model, log, *options, port=self.ports[i])

    def stop(self, i: int, sig: int = signal.SIGTERM) -> int | None:
        """Stop replica `i` with `sig` (SIGTERM drains; SIGKILL to its whole process group, a crash): its exit
        status."""
        old = self.replicas[i]
        if sig == signal.SIGKILL:
            old.kill()
        else:
            old.proc.send_signal(sig)
            old.proc.wait(30)
        old.kill()  # whatever is left of its process group
        return old.proc.returncode

    def restart(self, i: int, sig: int | None = signal.SIGTERM) -> int | None:
        """`stop` replica `i` (unless `sig` is None: already stopped), start it again on its port, wait until it
        is ready and the balancer has checked it. The old process's exit status."""
        status = None if sig is None else self.stop(i, sig)
        self.replicas[i] = self._launch(i)
        self.replicas[i].wait_ready()
        time.sleep(0.75)  # three health checks of the balancer: up again (rise 1)
        return status

    def post(self, key: str, text: str, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/predict", json={"text": text}, headers={"X-API-Key": key}, timeout=timeout)

    def close(self) -> None:
        if self.haproxy.poll() is None:
            self.haproxy.kill()
            self.haproxy.wait(10)
        for replica in self.replicas:
            replica.stop(timeout=5)
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tiny_run, tmp_path_factory) -> Iterator[Cluster]:
    cluster = Cluster(tiny_run, tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


class Load:
    """`threads` clients posting through the balancer until stopped (at most `limit` requests, `seconds` s):
    every outcome is kept, a status or the exception's name."""

    def __init__(self, cluster: Cluster, threads: int = 2, pause: float = 0.05, limit: int = 3000, seconds: float = 60):
        self.cluster, self.limit, self.deadline = cluster, limit, time.monotonic() + seconds
        self.pause = pause  # seconds between a client's requests: steady load that leaves room for a restart
        self.outcomes: list = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(threads)]

    def _client(self, n: int) -> None:
        i = n
        while not self.stopping.is_set() and len(self.outcomes) < self.limit and time.monotonic() < self.deadline:
            text = f"{SENTENCES[i % len(SENTENCES)]} {i}"  # mostly new sentences: the replicas translate
            i += len(self.threads)
            try:
                outcome = self.cluster.post("free", text).status_code
            except requests.RequestException as e:
                outcome = e.__class__.__name__
            with self._lock:
                self.outcomes.append(outcome)
            self.stopping.wait(self.pause)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def count(self) -> int:
        return len(self.outcomes)

    def wait_for(self, more: int, timeout: float = 20) -> None:
        """Until `more` further requests were answered (bounded)."""
        target, deadline = self.count() + more, time.monotonic() + timeout
        while self.count() < target and time.monotonic() < deadline:
            time.sleep(0.05)


def _served(replica: ServerProcess) -> float:
    return metric(metrics(replica.url, **{"X-API-Key": "free"}), "nmt_http_requests_total", route="/predict",
                  method="POST", status="200")  # fmt: skip


def test_a_key_gets_exactly_its_quota_across_replicas(cluster):
    """QUOTA + 10 requests of one key through the balancer, 4 at a time: exactly QUOTA are answered 200 (by both
    replicas), the others 429 with a Retry-After within the minute."""
    before = [_served(replica) for replica in cluster.replicas]
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda i: cluster.post("quota", SENTENCES[i % len(SENTENCES)]), range(QUOTA + 10)))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: QUOTA, 429: 10}, statuses
    assert all(1 <= int(r.headers["Retry-After"]) <= 60 for r in responses if r.status_code == 429)
    served = [_served(replica) - b for replica, b in zip(cluster.replicas, before, strict=True)]
    assert all(n > 0 for n in served) and sum(n for n in served) >= QUOTA, served


def test_a_sentence_translated_on_one_replica_is_a_hit_on_the_other(cluster):
    first, second = cluster.replicas
    text = "Eine Katze schläft auf dem Sofa."
    body = {"text": text}
    answer = first.post(body, headers={"X-API-Key": "free"})
    hits_before = metric(metrics(second.url, **{"X-API-Key": "free"}), "nmt_shared_cache_hits_total")
    again = second.post(body, headers={"X-API-Key": "free"})
    assert answer.status_code == again.status_code == 200 and answer.content == again.content
    samples = metrics(second.url, **{"X-API-Key": "free"})
    assert metric(samples, "nmt_shared_cache_hits_total") == hits_before + 1
    assert metric(samples, "nmt_redis_up", use="cache") == 1 and metric(samples, "nmt_redis_up", use="quota") == 1


def test_rolling_restart_under_steady_load_fails_no_request(cluster):
    with Load(cluster) as load:
        load.wait_for(10)
        statuses = []
        for i in range(len(cluster.replicas)):
            statuses.append(cluster.restart(i, signal.SIGTERM))  # drains: /health 503, port closed, requests done
            load.wait_for(10)
    assert statuses == [0] * len(cluster.replicas)
    outcomes = Counter(load.outcomes)
    assert outcomes == {200: load.count()} and load.count() >= 30, outcomes


def test_sigkill_of_a_replica_under_load_loses_no_request(cluster):
    """SIGKILL of a replica's whole process group while requests stream through the balancer: the requests it held
    and those sent to it before the balancer's checks notice are retried on the other replica."""
    with Load(cluster, threads=3, pause=0) as load:
        load.wait_for(20)
        killed_at = load.count()
        cluster.stop(0, signal.SIGKILL)
        load.wait_for(40)
    outcomes = Counter(load.outcomes)  # (the last test of the module: the replica stays down)
    haproxy_log = (cluster.directory / "haproxy.log").read_text(encoding="utf-8", errors="replace")
    assert re.search(r"/\+\d+ \d+/\d+ \"POST", haproxy_log), "no request was redispatched: the kill came too late"
    assert outcomes == {200: load.count()}, (
        outcomes,
        killed_at,
        (cluster.directory / "haproxy.log").read_text()[-3000:],
    )
