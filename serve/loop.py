"""A LitServe batched loop that sleeps while idle.

LitServe 0.2.19's BatchedLoop polls the request queue (a multiprocessing manager proxy) every millisecond, idle or
not: about 10% of a core between the worker and the manager process. This loop blocks on the first request
instead, then gathers more for up to `batch_timeout` seconds from that first arrival, the same batching otherwise.
"""

import time
from queue import Empty

from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError
from litserve.loops.simple_loops import BatchedLoop
from litserve.utils import LitAPIStatus, LoopResponseType

from serve.metrics import observe_queue_wait

IDLE_WAIT = 1.0  # seconds per blocking wait while idle (one round trip to the manager each)


class IdleFriendlyBatchedLoop(BatchedLoop):
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
