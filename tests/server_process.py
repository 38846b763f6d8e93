"""`nmt serve` as a user runs it, in a subprocess on a free localhost port (shared by test_serve and test_bench)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from conftest import REPO, nmt_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def raw_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, bytes as given (no JSON encoding, no Content-Type unless in `headers`):
    (status, lower-cased headers, body). A connection closed without an answer raises."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def raw_bytes(port: int, request: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """Send `request` exactly as given on a fresh socket (no client library to tidy its headers) and read the
    answer until the server closes: (status, body). `request` should say `Connection: close`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class ServerProcess:
    """A running `python -m nmt serve`: its own session (process group), stderr and stdout in `log_path`."""

    def __init__(
        self,
        model: Path | list[Path],
        log_path: Path,
        *options: str,
        api_key: str | None = None,
        port: int | None = None,
        **env: str,
    ):
        self.port = port or free_port()  # a given port: a replica restarted where its balancer expects it
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.headers = {"X-API-Key": api_key} if api_key else {}
        if api_key:
            env["NMT_API_KEY"] = api_key
        models = [a for m in (model if isinstance(model, list) else [model]) for a in ("--model", str(m))]
        command = [sys.executable, "-m", "nmt", "serve", *models, "--port", str(self.port), *options]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=nmt_env(**env), cwd=REPO, start_new_session=True
            )
        self.pgid = self.proc.pid  # start_new_session: the server leads its own process group

    @classmethod
    def ready(cls, model, log_path: Path, *options: str, headers: dict | None = None, **kwargs) -> ServerProcess:
        """A started server whose /health answered 200 (probed with `headers` when given); killed if it never does."""
        server = cls(model, log_path, *options, **kwargs)
        if headers is not None:
            server.headers = headers
        try:
            server.wait_ready()
        except BaseException:
            server.kill()
            raise
        return server

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_line(self, wanted: Callable[[str], bool], timeout: float = 10) -> str:
        """The first log line for which `wanted` holds, waiting for it: a request's line may reach the file just
        after its answer (on a loaded machine, well after)."""
        deadline = time.monotonic() + timeout
        while True:
            line = next((x for x in self.log().splitlines() if wanted(x)), None)
            if line is not None:
                return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no such line in the server log after {timeout} s:\n{self.log()[-2000:]}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """Pids of the LitServe inference workers: the server's children started with multiprocessing's spawn."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"spawn_main" in cmdline:
                found.append(int(stat.parent.name))
        return found

    def wait_ready(self, timeout: float = 90) -> None:
        """Poll /health until 200; fail with the server's log when it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nmt serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", headers=self.headers, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"nmt serve not ready after {timeout} s:\n{self.log()[-3000:]}")

    def post(self, body: dict, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.post(f"{self.url}/predict", json=body, headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.get(f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int | None:
        """Signal the main process and wait; then kill whatever is left of its process group. Its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """Fallback: SIGKILL the whole process group (no server outlives a test)."""
        if group_alive(self.pgid):
            os.killpg(self.pgid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)
