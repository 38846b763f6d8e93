"""The translation web page at GET / : plain HTML, CSS and JavaScript files from serve/static (package data), no
asset from anywhere else. The page needs no key to load; it asks for one when the API answers 401 or 403."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
WEB_PAGE_PATHS = frozenset({"/"})  # open without a key, with everything under /static/ (serve.http.OPEN_PREFIXES)


def add_web_page(app: FastAPI) -> None:
    """Serve the page at / (replacing LitServe's plain-text "litserve running") and its files under /static."""
    app.router.routes[:] = [
        route for route in app.router.routes if not (getattr(route, "path", None) == "/" and "GET" in route.methods)
    ]

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
