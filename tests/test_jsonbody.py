"""The body rules of POST /predict that serve.jsonbody owns, whatever FastAPI's defaults: a body without a
Content-Type is not read as JSON (a 422), as docs/serving.md promises. FastAPI reads such a body as JSON where its
`strict_content_type` is off (the behaviour of the versions before the option), so the app is tried both ways,
called as ASGI without a server."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from serve.jsonbody import NOT_AN_OBJECT, StrictJSONRoute
from serve.middleware import http_error_handler, validation_error_handler
from serve.schema import TranslationRequest


def _app(strict_content_type: bool) -> FastAPI:
    """/predict as serve.server builds it: strict JSON routes and the server's error handlers."""
    options = {"strict_content_type": strict_content_type}
    app = FastAPI(**options if "strict_content_type" in inspect.signature(FastAPI).parameters else {})
    app.router.route_class = StrictJSONRoute
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)

    @app.post("/predict")
    async def predict(request: TranslationRequest) -> dict:
        return {"text": request.text}

    return app


def _post(app: FastAPI, body: bytes, content_type: bytes | None) -> tuple[int, dict]:
    headers = [(b"host", b"x"), (b"content-length", str(len(body)).encode())]
    headers += [(b"content-type", content_type)] if content_type is not None else []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    "body, content_type, status, answer",
    [
        (b'{"text": "Ein Hund."}', None, 422, {"detail": NOT_AN_OBJECT}),
        (b'{"text": "Ein Hund."}', b"", 422, {"detail": NOT_AN_OBJECT}),
        (b'{"text": "Ein Hund."}', b"text/plain", 422, {"detail": NOT_AN_OBJECT}),
        (b"", None, 422, {"detail": NOT_AN_OBJECT}),
        (b'{"text": "Ein Hund."}', b"application/json", 200, {"text": "Ein Hund."}),
        (b'{"text": "Ein Hund."}', b"application/vnd.api+json", 200, {"text": "Ein Hund."}),
    ],
    ids=["none", "empty", "text-plain", "no-body", "json", "plus-json"],
)
def test_only_a_json_content_type_is_read_as_json(strict, body, content_type, status, answer):
    assert _post(_app(strict), body, content_type) == (status, answer)


def test_malformed_json_is_400_with_the_reason():
    status, answer = _post(_app(True), b'{"text": "a", "text": "b"}', b"application/json")
    assert (status, answer) == (400, {"detail": "malformed JSON: duplicate key 'text'"})
