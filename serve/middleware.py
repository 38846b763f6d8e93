"""HTTP-side pieces of the service: ASGI middlewares (API key, body size, access log) and validation errors.

They run in the uvicorn processes, before a request is queued for an inference worker.
"""

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.auth import KEY_MESSAGE, KEY_REQUIRED, KEY_UNKNOWN, Keys, MissingKey, UnknownKey
from serve.jsonbody import NOT_AN_OBJECT, shown
from serve.logs import LOGGER
from serve.quota import QuotaExceeded, admit

logger = logging.getLogger(LOGGER)

SENTENCE_COUNT_HEADER = "X-Sentence-Count"  # sentences searched for a /predict answer, read by the access log
MAX_MESSAGES = 5  # validation messages in one 422 detail (a list of 10,000 numbers has 10,000 errors)
LT_PATHS = frozenset(
    {"/translate", "/detect", "/languages", "/frontend/settings", "/suggest", "/translate_file"}
)  # {"error": ...}
LT_PREFIXES = ("/download_file/",)  # LibreTranslate's routes with a name in the path: {"error": ...}, no key
# the schema needs no key; the LibreTranslate routes check the key in their parameters (serve.libretranslate)
OPEN_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}) | LT_PATHS


def is_lt_path(path: str) -> bool:
    """Whether `path` is one of LibreTranslate's routes."""
    return path in LT_PATHS or path.startswith(LT_PREFIXES)


def error_body(path: str, message: str) -> dict[str, str]:
    """An error as the route's API writes it: `{"error": ...}` on LibreTranslate's routes, else `{"detail": ...}`."""
    return {"error": message} if is_lt_path(path) else {"detail": message}


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (`name` in lower case), as the bytes that arrived."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def send_error(send: Send, scope: Scope, status: int, detail: str, headers: Iterable = ()) -> None:
    """An error answer straight from a middleware, in the body format of the route's API."""
    body = json.dumps(error_body(scope["path"], detail)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class KeyMiddleware:
    """The key of the native routes, from the X-API-Key header, decided before the body is read (serve.quota.admit,
    the same check as the LibreTranslate routes' `api_key`): 401 without a key; a wrong key 401 with one server key,
    403 with a keys file; 429 with Retry-After over the key's requests per minute (POST requests count).
    `open_paths` need no key."""

    def __init__(self, app: ASGIApp, keys: Keys, open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self.keys = keys
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or scope["path"].startswith(LT_PREFIXES):
            return await self.app(scope, receive, send)
        try:
            await admit(self.keys, header(scope, b"x-api-key"), count_request=scope["method"] == "POST")
        except MissingKey:
            return await send_error(send, scope, 401, KEY_REQUIRED)
        except UnknownKey:
            status = self.keys.unknown_status
            return await send_error(send, scope, status, KEY_MESSAGE if status == 401 else KEY_UNKNOWN)
        except QuotaExceeded as e:
            return await send_error(send, scope, 429, e.detail, [(b"retry-after", str(e.retry_after).encode())])
        await self.app(scope, receive, send)


class DrainMiddleware:
    """While the server drains (SIGTERM, serve.litserve_glue.TranslationServer.drain): /health answers 503, so a
    load balancer stops sending requests here, and every other answer closes its connection."""

    def __init__(self, app: ASGIApp, draining: Any):
        self.app = app
        self.draining = draining  # a multiprocessing.Value shared with the main process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.draining.value:
            return await self.app(scope, receive, send)
        if scope["path"] == "/health":
            return await send_error(send, scope, 503, "draining: this server is shutting down")

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes` (or the limit `paths` gives its path: an uploaded file's route):
    from Content-Length up front, else while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int, paths: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        max_bytes = self.paths.get(scope["path"], self.max_bytes)
        detail = f"request body over the limit of {max_bytes} bytes"
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            return await send_error(send, scope, 413, detail)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise HTTPException(413, detail)  # FastAPI re-raises it from its body reader; answered as JSON
            return message

        await self.app(scope, limited_receive, send)


def _readable(body: bytes) -> str:
    """A body for the log: JSON re-encoded without \\u escapes, anything else as (lossy) UTF-8 text."""
    try:
        text = json.dumps(json.loads(body), ensure_ascii=False)
        text.encode("utf-8")  # a lone surrogate cannot be logged as is
        return text
    except (ValueError, RecursionError):  # not JSON, not encodable (a UnicodeError), or nested too deeply
        return body.decode("utf-8", "replace")


class AccessLogMiddleware:
    """One log line per request: method, path, status, sentence count, latency; bodies only with `log_text`."""

    def __init__(self, app: ASGIApp, log_text: bool = False):
        self.app = app
        self.log_text = log_text

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status, sentences = 500, "-"
        request_body, response_body = bytearray(), bytearray()

        async def logged_receive() -> Message:
            message = await receive()
            if self.log_text:
                request_body.extend(message.get("body", b""))
            return message

        async def logged_send(message: Message) -> None:
            nonlocal status, sentences
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == SENTENCE_COUNT_HEADER.lower().encode():
                        sentences = value.decode("latin-1")
            elif self.log_text and message["type"] == "http.response.body":
                response_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, logged_receive, logged_send)
        finally:
            line = "%s %s %d sentences=%s %.1f ms"
            args = [scope["method"], scope["path"], status, sentences, (time.perf_counter() - start) * 1000]
            if self.log_text:
                line += " request=%s response=%s"
                args += [_readable(request_body), _readable(response_body)]
            logger.info(line, *args)


def _describe(error: dict) -> str:
    field = shown(".".join(str(part) for part in error.get("loc", ())[1:]))
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return f"unknown field '{field}'"
    if not field:  # the body as a whole
        if error.get("type") in ("missing", "model_attributes_type", "dict_type", "model_type"):
            return NOT_AN_OBJECT
        return message
    return f"{field}: {message}"


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """400 for malformed JSON, else 422; one readable message, no echo of the input."""
    errors = exc.errors()
    if errors and errors[0].get("type") == "json_invalid":  # FastAPI's parser (serve.jsonbody answers its own 400)
        ctx = errors[0].get("ctx") or {}
        position = errors[0].get("loc", ("body", "?"))[-1]
        detail = f"malformed JSON: {ctx.get('error', 'cannot parse')} at position {position}"
        return JSONResponse({"detail": detail}, status_code=400)
    messages = list(dict.fromkeys(_describe(e) for e in errors))
    more = f"; and {len(messages) - MAX_MESSAGES} more" if len(messages) > MAX_MESSAGES else ""
    return JSONResponse({"detail": "; ".join(messages[:MAX_MESSAGES]) + more}, status_code=422)


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Any exception that escapes a route: a JSON 500 without details (the traceback goes to the server log)."""
    logger.error("%s %s: internal error %s", request.method, request.url.path, exc.__class__.__name__, exc_info=exc)
    return JSONResponse(error_body(request.url.path, "internal server error"), status_code=500)


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    """An HTTPException (404, 405, 413, 504, a route's 400 or 403) in the body format of the route's API."""
    return JSONResponse(error_body(request.url.path, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def quota_exceeded_handler(request: Request, exc: QuotaExceeded) -> JSONResponse:
    """429 with Retry-After; 413 for a request that no window could ever admit (larger than the limit itself)."""
    body = error_body(request.url.path, exc.detail)
    if exc.retry_after <= 0:
        return JSONResponse(body, status_code=413)
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(exc.retry_after)})
