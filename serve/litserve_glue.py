"""Everything of the service that touches LitServe's private API, written against litserve 0.2.19 (pinned).

An upgrade of litserve must start here: `check_litserve_version` refuses to start the server on any other version
(tests/test_litserve_glue.py fails loudly too), because each piece below relies on internals that may change:

- `TranslationServer.register_endpoints` replaces LitServe's routes with ours (serve.routes) and submits work to
  the inference workers as LitServe's own handler does (`RegularRequestHandler._submit_request`, the
  `response_buffer`, `_callback_runner`), with a deadline on the whole request (`submit_work`).
- `launch_single_inference_worker` stops LitServe's monitor thread from respawning workers during shutdown.
- `_start_server` and `_perform_graceful_shutdown` drain the server before LitServe stops it (`drain`): /health
  503, the listening socket closed, the requests in flight answered by the still running workers.
- `IdleFriendlyBatchedLoop` reads the request queue itself (`_SENTINEL_VALUE`, `_StopLoopError`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess
from queue import Empty
from typing import Any

import litserve as ls
from fastapi import HTTPException
from litserve.callbacks.base import EventTypes
from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.server import RegularRequestHandler
from litserve.utils import LitAPIStatus, LoopResponseType, ResponseBufferItem

from serve.logs import LOGGER
from serve.metrics import observe_queue_wait

logger = logging.getLogger(LOGGER)

LITSERVE_VERSION = "0.2.19"  # the version every override below was written against
WORK_PATH = "/predict"  # LitServe's key of the request queue (our routes, not LitServe, answer HTTP requests)
IDLE_WAIT = 1.0  # seconds per blocking wait while idle (one round trip to the manager each)


def check_litserve_version(installed: str | None = None) -> None:
    """RuntimeError unless litserve is the version this module was written against."""
    installed = installed or ls.__version__
    if installed != LITSERVE_VERSION:
        raise RuntimeError(
            f"litserve {installed} is installed, but serve/litserve_glue.py overrides internals of litserve "
            f"{LITSERVE_VERSION}: install litserve=={LITSERVE_VERSION} or port that module"
        )


def timeout_detail(timeout: float) -> str:
    return (
        f"no answer within the time limit of {timeout:g} s (queue and translation); the server is busy or the "
        "request is too large: send fewer or shorter texts, or a smaller beam_size or max_length"
    )


class TranslationServer(ls.LitServer):
    """LitServer whose routes are `register_routes(app, submit)` (serve.routes), with a time limit on the whole
    request, and no worker restarts once shutdown has begun."""

    stopping = False

    def __init__(
        self,
        lit_api: ls.LitAPI,
        register_routes: Callable[[Any, Callable], None],
        drain_timeout: float = 30.0,
        drain_delay: float = 0.0,
        draining: Any = None,
        **kwargs: Any,
    ):
        check_litserve_version()
        self.register_routes = register_routes  # read by register_endpoints, which LitServer.__init__ calls
        # set on SIGTERM in the main process, read by the forked HTTP processes (shared memory): /health is 503
        self.draining = multiprocessing.Value("b", 0, lock=False) if draining is None else draining
        self.drain_timeout, self.drain_delay = drain_timeout, drain_delay
        self._sockets: list = []
        super().__init__(lit_api, **kwargs)
        self.uvicorn_graceful_timeout = drain_timeout  # uvicorn's own bound on finishing its requests

    def register_endpoints(self) -> None:
        self._callback_runner.trigger_event(EventTypes.ON_SERVER_START.value, litserver=self)
        handler = RegularRequestHandler(self.lit_api, self)

        async def submit(work: Any) -> Any:
            return await submit_work(self, handler, work)

        self.register_routes(self.app, submit)

    def workers_ready(self) -> bool:
        """Every inference worker has finished `setup` (what LitServe's own /health checks)."""
        from litserve.utils import WorkerSetupStatus

        status = self.workers_setup_status
        return bool(status) and all(v == WorkerSetupStatus.READY for v in status.values())

    def is_draining(self) -> bool:
        return bool(self.draining.value)

    def _start_server(self, port, num_uvicorn_servers, log_level, sockets, uvicorn_worker_type, **kwargs):
        self._sockets = list(sockets or [])  # the listening socket: the main process must close its copy to drain
        return super()._start_server(port, num_uvicorn_servers, log_level, sockets, uvicorn_worker_type, **kwargs)

    def _perform_graceful_shutdown(self, manager, uvicorn_workers, shutdown_reason: str = "normal") -> None:
        if self.is_draining() and uvicorn_workers:
            self.drain(uvicorn_workers)
            uvicorn_workers = {}  # stopped: LitServe would only warn that they are not alive
        super()._perform_graceful_shutdown(manager, uvicorn_workers, shutdown_reason)

    def drain(self, uvicorn_workers: dict) -> None:
        """Stop taking requests and answer those in flight, in at most `drain_delay` + `drain_timeout` seconds:
        /health answers 503 from the start (`draining`); after `drain_delay` seconds (a load balancer's time to
        notice) the listening socket closes (new connections are refused) and each HTTP process finishes its
        requests (uvicorn's graceful shutdown) while the inference workers still run."""
        # (LitServe's monitor thread restarts no worker now: `stopping` is set. Its manager Event cannot be set from
        # here: the main thread's proxy connection is still inside the `wait()` that the signal interrupted.)
        start = time.monotonic()
        if self.drain_delay > 0:
            logger.info("draining: /health answers 503; new requests accepted for %g s more", self.drain_delay)
            time.sleep(self.drain_delay)
        for sock in self._sockets:
            sock.close()
        processes = [w for w in uvicorn_workers.values() if isinstance(w, BaseProcess) and w.is_alive()]
        for process in processes:
            os.kill(process.pid, signal.SIGTERM)  # uvicorn: close the port, finish the requests in flight
        logger.info("draining: finishing the requests in flight (at most %g s)", self.drain_timeout)
        deadline = time.monotonic() + self.drain_timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        late = [p for p in processes if p.is_alive()]
        for process in late:
            process.kill()
            process.join(1)
        logger.info(
            "drained in %.1f s%s",
            time.monotonic() - start,
            f"; {len(late)} HTTP process(es) still busy after --drain-timeout were killed" if late else "",
        )

    def launch_single_inference_worker(self, lit_api: ls.LitAPI, worker_id: int):
        if self.stopping:  # LitServe's monitor thread would otherwise respawn the workers it is stopping
            return self.inference_workers[worker_id]
        return super().launch_single_inference_worker(lit_api, worker_id)


async def submit_work(server: TranslationServer, handler: RegularRequestHandler, work: Any) -> Any:
    """Queue `work` for an inference worker and wait for its answer, at most `server.timeout` seconds from now.

    LitServe's own `timeout` only bounds the wait in the queue: a request whose search has started is answered
    whenever the search ends, and one whose worker died is never answered at all. Here the answer is 504 once the
    time is up, whatever the worker is doing; its late answer is dropped. Requests still queued at their deadline
    are skipped by the worker (IdleFriendlyBatchedLoop), so an overloaded server wastes no time on them.
    """
    timeout = server.timeout
    uid, _ = await handler._submit_request(work)  # does not await: the buffer entry exists before any answer
    event = asyncio.Event()
    server.response_buffer[uid] = ResponseBufferItem(event)
    try:
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("request %s: no answer after %g s, answered 504", uid, timeout)
            raise HTTPException(504, timeout_detail(timeout)) from None
        response, status = server.response_buffer[uid].response
    finally:
        server.response_buffer.pop(uid, None)  # a late answer finds no entry and is dropped
    if status == LitAPIStatus.ERROR:
        handler._handle_error_response(response)  # raises an HTTPException (500 unless the worker chose one)
    server._callback_runner.trigger_event(EventTypes.ON_RESPONSE.value, litserver=server)
    return response


Submit = Callable[[Any], Awaitable[Any]]


class IdleFriendlyBatchedLoop(BatchedLoop):
    """LitServe's BatchedLoop polls the request queue (a multiprocessing manager proxy) every millisecond, idle or
    not: about 10% of a core between the worker and the manager process. This loop blocks on the first request
    instead, then gathers more for up to `batch_timeout` seconds from that first arrival, the same batching
    otherwise."""

    def get_batch_requests(self, lit_api, request_queue, transport) -> tuple[list, list]:
        """Up to `max_batch_size` requests: (payloads, timed-out ids), as LitServe's `collate_requests` returns."""
        payloads: list = []
        timed_out: list = []
        apply_timeout = lit_api.request_timeout not in (-1, False, None)
        deadline = None
        while len(payloads) + len(timed_out) < lit_api.max_batch_size:
            wait = IDLE_WAIT if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                item = request_queue.get(timeout=wait)
            except Empty:
                break
            if item == _SENTINEL_VALUE:
                raise _StopLoopError()
            response_queue_id, uid, timestamp, x_enc = item
            self.put_response(transport, response_queue_id, uid, (), LitAPIStatus.START, LoopResponseType.REGULAR)
            waited = time.monotonic() - timestamp  # queued by the HTTP process (a system-wide monotonic clock)
            if apply_timeout and waited > lit_api.request_timeout:
                timed_out.append((response_queue_id, uid))
            else:
                observe_queue_wait(waited)
                payloads.append((response_queue_id, uid, x_enc))
            if deadline is None:
                deadline = time.monotonic() + lit_api.batch_timeout
        return payloads, timed_out
