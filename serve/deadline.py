"""The request time limit (`--timeout`), enforced in the HTTP process.

LitServe's own `timeout` only bounds the wait in the queue: a request whose search has started is answered
whenever the search ends, and one whose worker died is never answered at all (LitServe marks it failed in the main
process's copy of the response table, not in the HTTP process that waits for it). This handler answers 504 once
`timeout` seconds have passed since the request was queued, whatever the worker is doing; the worker finishes its
batch and its late answer is dropped. Requests still queued at their deadline are skipped by the worker
(serve.loop), so an overloaded server does not spend time on answers nobody waits for.
"""

import asyncio
import logging
from typing import Any

from fastapi import HTTPException, Response
from litserve.callbacks.base import EventTypes
from litserve.server import RegularRequestHandler
from litserve.utils import LitAPIStatus, ResponseBufferItem

from serve.logs import LOGGER
from serve.quota import characters_of, charge_characters

logger = logging.getLogger(LOGGER)


def timeout_detail(timeout: float) -> str:
    return (
        f"no answer within the time limit of {timeout:g} s (queue and translation); the server is busy or the "
        "request is too large: send fewer or shorter texts, or a smaller beam_size or max_length"
    )


class DeadlineRequestHandler(RegularRequestHandler):
    """LitServe's handler for /predict with one change: the wait for the worker's answer ends at the deadline."""

    async def handle_request(self, request: Any, request_type: type) -> Response:
        timeout = self.server.timeout
        payload = await self._prepare_request(request, request_type)
        await charge_characters(characters_of(payload))  # the key's characters per day (serve.quota), or 429
        # `_submit_request` does not await: the answer cannot be read before its buffer entry exists
        uid, _ = await self._submit_request(payload)
        event = asyncio.Event()
        self.server.response_buffer[uid] = ResponseBufferItem(event)
        try:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                logger.warning("request %s: no answer after %g s, answered 504", uid, timeout)
                raise HTTPException(504, timeout_detail(timeout)) from None
            response, status = self.server.response_buffer[uid].response
        finally:
            self.server.response_buffer.pop(uid, None)  # a late answer finds no entry and is dropped
        if status == LitAPIStatus.ERROR:
            self._handle_error_response(response)
        self.server._callback_runner.trigger_event(EventTypes.ON_RESPONSE.value, litserver=self.server)
        return response
