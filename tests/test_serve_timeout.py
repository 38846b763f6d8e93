"""`nmt serve --timeout`: a request that is not answered within the limit gets a 504 with a JSON detail at the limit,
while the server keeps answering other requests; a request whose worker dies gets that 504 instead of hanging.

The slow request is real work, not a test hook: 256 texts of 1,000 characters with beam 16 keep a worker of the
tiny model busy for about 10 s on 2 shared cores, 5 times the 2 s limit used here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from server_process import ServerProcess

TIMEOUT = 2.0
OPTIONS = ["--workers", "2", "--threads", "1", "--timeout", str(TIMEOUT), "--max-texts", "256",
           "--max-body-bytes", "4000000", "--cache-size", "0"]  # fmt: skip
# no cache: with it the 256 equal texts below would be searched once (serve.cache), not 256 times
SLOW = {"texts": ["x" * 1000] * 256, "beam_size": 16}
SMALL = {"text": "Ein Hund läuft über die Wiese.", "beam_size": 1}

pytestmark = [
    pytest.mark.slow,  # starts `nmt serve` and waits out its time limit
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc"),
]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    proc = ServerProcess(tiny_run, tmp_path_factory.mktemp("timeout") / "server.log", *OPTIONS)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def _post_in_background(server: ServerProcess, body: dict) -> tuple[threading.Thread, dict]:
    """POST `body` from a thread; the dict gets status, detail and seconds (or the client's exception)."""
    result: dict = {}

    def post() -> None:
        start = time.monotonic()
        try:
            response = requests.post(f"{server.url}/predict", json=body, timeout=TIMEOUT + 10)
            result.update(status=response.status_code, body=response.json())
        except requests.RequestException as e:
            result.update(status=None, body=repr(e))
        result["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    time.sleep(0.5)  # queued and taken by a worker (it waits 10 ms for more requests to batch with it)
    return thread, result


def _assert_timed_out(result: dict) -> None:
    assert result["status"] == 504, result
    assert f"time limit of {TIMEOUT:g} s" in result["body"]["detail"]
    assert TIMEOUT - 0.1 <= result["seconds"] <= TIMEOUT + 2.5, result["seconds"]


def test_slow_request_is_504_at_the_limit_while_others_are_served(server):
    thread, slow = _post_in_background(server, SLOW)
    answered = []
    while thread.is_alive():
        start = time.monotonic()
        response = server.post(SMALL)
        answered.append((response.status_code, time.monotonic() - start))
        assert server.get("/health").status_code == 200
        assert server.post({"text": ""}).status_code == 422
    thread.join()
    _assert_timed_out(slow)
    assert [status for status, _ in answered] == [200] * len(answered)
    assert len(answered) >= 3, "the other worker answered too few requests while the slow one ran"
    log = server.log()
    assert "POST /predict 504 " in log and "answered 504" in log and "Traceback" not in log


def test_request_of_a_dead_worker_is_504_not_a_hang(server):
    """LitServe marks such a request failed only in the main process: the HTTP process used to wait for ever."""
    thread, slow = _post_in_background(server, SLOW)
    for pid in server.worker_pids():
        os.kill(pid, signal.SIGKILL)
    thread.join()
    _assert_timed_out(slow)
    deadline = time.monotonic() + 60
    while server.get("/health").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.post(SMALL).status_code == 200
