"""`nmt serve` behind a load balancer: /health is 503 until every worker is ready and again while draining; SIGTERM
refuses new connections, answers the requests in flight (bounded by --drain-timeout) and exits 0."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests
from server_process import ServerProcess

pytestmark = pytest.mark.slow

FAST = ["--threads", "1", "--health-open"]
TEXT = "Ein Mann fährt Fahrrad."


def test_health_is_503_until_every_worker_is_ready(tiny_run, tmp_path):
    """Two workers: /health answers 200 only once both have logged that they loaded the model, and a request sent
    at the first 200 is translated."""
    server = ServerProcess(tiny_run, tmp_path / "server.log", *FAST, "--workers", "2", "--batch-timeout", "0.002")
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log()[-2000:]
            try:
                status = requests.get(f"{server.url}/health", timeout=2).status_code
            except requests.RequestException:
                time.sleep(0.02)
                continue
            seen.append(status)
            if status == 200:
                assert server.log().count("worker ready") == 2, (seen, server.log()[-2000:])
                break
            assert status == 503
            time.sleep(0.02)
        assert seen and seen[-1] == 200, server.log()[-2000:]
        assert server.post({"text": TEXT}).status_code == 200
    finally:
        server.stop()


def _in_flight(server: ServerProcess, results: list, text: str = TEXT) -> threading.Thread:
    def send() -> None:
        try:
            response = server.post({"text": text})
            results.append((response.status_code, response.json()))
        except requests.RequestException as e:
            results.append((None, repr(e)))

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_sigterm_drains_then_exits_0(tiny_run, tmp_path):
    """A request waits 3 s for its batch (--batch-timeout 3) when SIGTERM arrives: during --drain-delay /health is
    503 and a new request is still accepted; then new connections are refused; both requests are answered 200
    and the server exits 0, long before --drain-timeout."""
    server = ServerProcess.ready(tiny_run, tmp_path / "server.log", *FAST, "--batch-timeout", "3",
                                 "--max-batch-size", "8", "--drain-delay", "1", "--drain-timeout", "20")  # fmt: skip
    results: list = []
    try:
        first = _in_flight(server, results)
        time.sleep(0.5)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert requests.get(f"{server.url}/health", timeout=5).status_code == 503
        second = _in_flight(server, results, "Zwei Hunde spielen.")  # within the drain delay: accepted
        refused = None
        while time.monotonic() - signalled < 8 and refused is None:
            try:
                requests.get(f"{server.url}/health", timeout=2)
            except requests.ConnectionError as e:
                refused = e  # the port is closed: the balancer's next try goes elsewhere
            time.sleep(0.1)
        assert refused is not None, "new connections still accepted 8 s after SIGTERM"
        assert server.proc.wait(20) == 0
        first.join(20)
        second.join(20)
        assert [status for status, _ in results] == [200, 200], results
        assert time.monotonic() - signalled < 15
        assert "drained in" in server.log()
    finally:
        server.stop()


def test_drain_timeout_bounds_the_wait(tiny_run, tmp_path):
    """A request that would take longer than --drain-timeout does not hold the server: it exits 0 in about
    --drain-timeout seconds."""
    server = ServerProcess.ready(tiny_run, tmp_path / "server.log", *FAST, "--batch-timeout", "10",
                                 "--drain-timeout", "1", "--timeout", "30")  # fmt: skip
    results: list = []
    try:
        thread = _in_flight(server, results)
        time.sleep(0.5)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(20) == 0
        assert time.monotonic() - signalled < 8
        thread.join(20)
        assert results and results[0][0] != 200  # cut off: the price of the bound
    finally:
        server.stop()
