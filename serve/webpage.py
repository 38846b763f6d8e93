"""The translation web page: GET / for a browser (Accept: text/html) and its files under /static/, plain HTML, CSS
and JavaScript from serve/static (package data); nothing is loaded from anywhere else.

An ASGI middleware outside the API-key check, so the page loads without a key and asks for one itself when the API
answers 401 or 403. GET / without text/html in Accept (curl, API clients) still reaches the JSON index route.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/"
PAGE = STATIC_DIR / "index.html"


def wants_html(scope: Scope) -> bool:
    """A browser navigating to the page: text/html among the accepted types."""
    for key, value in scope.get("headers", []):
        if key == b"accept":
            return b"text/html" in value.lower()
    return False


class WebPageMiddleware:
    """Answers GET / from a browser with the page and /static/* with its files; everything else goes on."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.files = StaticFiles(directory=STATIC_DIR)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/" and scope["method"] in ("GET", "HEAD") and wants_html(scope):
            response = FileResponse(PAGE, media_type="text/html; charset=utf-8")
            response.headers["Cache-Control"] = "no-cache"
            return await response(scope, receive, send)
        if not path.startswith(STATIC_PREFIX):
            return await self.app(scope, receive, send)
        try:
            relative = self.files.get_path({**scope, "path": path[len(STATIC_PREFIX) - 1 :], "root_path": ""})
            response = await self.files.get_response(relative, scope)
        except HTTPException as e:  # 404 for an unknown file (".." cannot leave the directory), 405 for a POST
            body = json.dumps({"detail": e.detail}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in (e.headers or {}).items()]
            await send({"type": "http.response.start", "status": e.status_code, "headers": headers})
            return await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
        await response(scope, receive, send)
