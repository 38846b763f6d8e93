"""LibreTranslate-compatible routes (LibreTranslate 1.9's `libretranslate/app.py`): POST /translate, POST /detect,
GET /languages, for clients such as Mastodon, SearXNG, libretranslatepy and deep-translator.

As in LibreTranslate, parameters come from a JSON body (Content-Type application/json), or else from the query
string and a form body (urlencoded or multipart; the query string wins); unknown fields are ignored; the API key is
the `api_key` parameter (not a header); every error is `{"error": "..."}`: 400 for a bad request (and a missing
key), 403 for a wrong key. The checks run in LibreTranslate's order, with its messages.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from serve.auth import MissingKey, UnknownKey
from serve.files import supported_formats
from serve.html import MarkupError, parse_html
from serve.jsonbody import MalformedJSON, parse_json, shown
from serve.languages import Detection, language_name, served_code
from serve.middleware import SENTENCE_COUNT_HEADER
from serve.quota import admit
from serve.service import Model, PairError, Service
from serve.translation import Options, TextResult

FORMATS = ("text", "html")
KEY_MISSING = "Please contact the server operator to get an API key"
KEY_INVALID = "Invalid API key"


class LTError(HTTPException):
    """An error answered as LibreTranslate does: `{"error": message}` with its status."""


def missing(name: str) -> LTError:
    return LTError(400, f"Invalid request: missing {name} parameter")


def _is_json(content_type: str) -> bool:
    """Flask's `request.is_json`: application/json or application/*+json."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


async def read_params(request: Request) -> dict[str, Any]:
    """The request's parameters: the JSON object, or the query string over the form body (first value of each)."""
    if _is_json(request.headers.get("content-type", "")):
        try:
            params = parse_json(await request.body())
        except MalformedJSON as e:
            raise LTError(400, f"Failed to decode JSON object: {e}") from None
        if not isinstance(params, dict):
            raise LTError(400, "Invalid JSON format")
        return params
    params: dict[str, Any] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        try:
            form = await request.form()
        except (HTTPException, ValueError, AssertionError) as e:  # python-multipart: a malformed body
            raise LTError(
                400, f"Invalid form body: {shown(str(getattr(e, 'detail', e)) or 'cannot parse', 80)}"
            ) from None
        for key, value in form.multi_items():
            params.setdefault(key, value if isinstance(value, str) else None)  # a file is no parameter value
    query = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, value)
    # the query string wins, as in LibreTranslate, but an empty query value does not hide the form's
    return {**params, **{key: value for key, value in query.items() if value or key not in params}}


async def check_key(service: Service, params: dict[str, Any]) -> None:
    """LibreTranslate's key check, through the server's one key check (serve.quota.admit): with a server key or a
    keys file, no `api_key` (or an empty one) is 400, a wrong one 403; with --keys, over the key's requests per
    minute 429. Without a server key any `api_key` is ignored."""
    if service.keys is None:
        return
    given = params.get("api_key")
    try:
        await admit(service.keys, given if isinstance(given, str) or given is None else "?", count_request=True)
    except MissingKey:
        raise LTError(400, KEY_MISSING) from None
    except UnknownKey:
        raise LTError(403, KEY_INVALID) from None


def _texts(service: Service, q: Any) -> list[str]:
    texts = q if isinstance(q, list) else [q]
    if not all(isinstance(t, str) for t in texts):
        raise LTError(400, "Invalid request: q must be a string or a list of strings")
    limits = service.limits
    if isinstance(q, list) and len(q) > limits.max_texts:
        raise LTError(400, f"Invalid request: request ({len(q)}) exceeds text limit ({limits.max_texts})")
    for text in texts:
        if len(text) > limits.max_chars:
            raise LTError(400, f"Invalid request: request ({len(text)}) exceeds text limit ({limits.max_chars})")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise LTError(400, "Invalid request: q is not valid Unicode (a lone surrogate)") from None
    return texts


def _alternatives(service: Service, value: Any) -> int:
    limit = service.limits.max_beam_size - 1  # the best and the alternatives come from one beam
    try:
        if isinstance(value, bool) or isinstance(value, (list, dict)) or value is None:
            raise ValueError
        n = max(0, int(value))
    except (ValueError, OverflowError):  # int("x"), int(float("inf")) cannot happen: strict JSON has no inf
        raise LTError(400, "Invalid request: alternatives parameter is not a number") from None
    if n > limit:
        raise LTError(400, f"Invalid request: alternatives parameter must be <= {limit}")
    return n


def language_code(service: Service, value: Any) -> str:
    return served_code(value, service.languages) if isinstance(value, str) else shown(str(value))


def _detect_each(service: Service, texts: list[str], html: bool) -> list[Detection]:
    """The likeliest served language of each text (of its translatable text, for HTML)."""
    return [service.detector.detect(" ".join(parse_html(t).texts) if html else t, 1)[0] for t in texts]


def register_routes(app: FastAPI, service: Service) -> None:
    @app.post("/translate", summary="Translate text (LibreTranslate API)", response_model=None)
    async def translate(request: Request) -> JSONResponse:
        params = await read_params(request)
        await check_key(service, params)
        q = params.get("q")
        if not q:
            raise missing("q")
        if isinstance(q, str) and not _is_json(request.headers.get("content-type", "")):
            q = "\n".join(q.splitlines())  # LibreTranslate: a form's line endings become \n (a trailing one goes)
        if not params.get("source"):
            raise missing("source")
        if not params.get("target"):
            raise missing("target")
        alternatives = _alternatives(service, params.get("alternatives", 0))
        texts = _texts(service, q)
        source, target = language_code(service, params["source"]), language_code(service, params["target"])
        text_format = params.get("format") or "text"
        languages = service.languages
        if source != "auto" and source not in languages:
            raise LTError(400, f"{shown(source)} is not supported")
        if target not in languages:
            raise LTError(400, f"{shown(target)} is not supported")
        if text_format not in FORMATS:
            raise LTError(400, f"{shown(str(text_format))} format is not supported")
        html = text_format == "html"
        try:
            if source == "auto":
                detections = await run_in_threadpool(_detect_each, service, texts, html)
            else:
                detections = [Detection(source, 100.0) for _ in texts]
            routes = [service.route(d.language, target) for d in detections]
            results = await _translate_grouped(service, texts, routes, alternatives, html)
        except MarkupError as e:
            raise LTError(400, f"Invalid request: {e}") from None
        except PairError as e:
            raise LTError(400, str(e)) from None
        best = [r.text for r in results]
        alts = [_unique([t for t, _ in r.alternatives], r.text) for r in results]
        single = not isinstance(q, list)
        body: dict[str, Any] = {"translatedText": best[0] if single else best}
        if source == "auto":
            found = [d.to_dict() for d in detections]
            body["detectedLanguage"] = found[0] if single else found
        if alternatives > 0:
            body["alternatives"] = alts[0] if single else alts
        return JSONResponse(body, headers={SENTENCE_COUNT_HEADER: str(sum(r.sentences for r in results))})

    @app.post("/detect", summary="Detect the language of a text (LibreTranslate API)", response_model=None)
    async def detect(request: Request) -> JSONResponse:
        params = await read_params(request)
        await check_key(service, params)
        q = params.get("q")
        if not q:
            raise missing("q")
        texts = _texts(service, q)
        found = await run_in_threadpool(service.detector.detect, "\n".join(texts))
        return JSONResponse([d.to_dict() for d in found])

    @app.get("/languages", summary="The languages this server translates (LibreTranslate API)", response_model=None)
    async def languages() -> JSONResponse:
        return JSONResponse(service.language_list())

    @app.get("/frontend/settings", summary="What a LibreTranslate front end needs (LibreTranslate API)")
    async def frontend_settings() -> JSONResponse:
        return JSONResponse(frontend_settings_of(service))

    @app.post("/suggest", summary="Suggest a better translation (LibreTranslate API)", response_model=None)
    async def suggest(request: Request) -> JSONResponse:
        if service.suggestions is None:
            raise LTError(403, "Suggestions are disabled on this server.")
        params = await read_params(request)
        await check_key(service, params)
        for name in ("q", "s", "source", "target"):
            if not params.get(name):
                raise missing(name)
        original, suggestion = _texts(service, params["q"]), _texts(service, params["s"])
        if len(original) != 1 or len(suggestion) != 1:
            raise LTError(400, "Invalid request: q and s must be one string each")
        source, target = language_code(service, params["source"]), language_code(service, params["target"])
        for code in (source, target):
            if code not in service.languages:
                raise LTError(400, f"{shown(code)} is not supported")
        await run_in_threadpool(service.suggestions.add, original[0], suggestion[0], source, target)
        return JSONResponse({"success": True})


async def _translate_grouped(
    service: Service, texts: list[str], routes: list[tuple[Model, ...]], alternatives: int, html: bool
) -> list[TextResult]:
    """Translate each text along its route (Service.route): one `Service.translate_route` per route, all queued
    at once (a text whose route is empty is its own translation)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, route in enumerate(routes):
        groups.setdefault(tuple(m.pair for m in route), []).append(i)
    n_best = 1 if html else alternatives + 1  # LibreTranslate gives no alternatives for HTML
    calls = []
    for members in groups.values():
        route = routes[members[0]]
        beam = max(route[-1].default_beam_size, n_best) if route else 1
        calls.append(service.translate_route([texts[i] for i in members], route, Options(beam, n_best), html))
    results: list[Any] = [None] * len(texts)
    for members, found in zip(groups.values(), await asyncio.gather(*calls), strict=True):
        for i, result in zip(members, found, strict=True):
            results[i] = result
    return results


def frontend_settings_of(service: Service) -> dict[str, Any]:
    """GET /frontend/settings, with the fields LibreTranslate 1.9 gives (its front end and clients read them)."""
    first = next(iter(service.models.values()))
    return {
        "charLimit": service.limits.max_chars,
        "frontendTimeout": 500,  # milliseconds LibreTranslate's page waits after typing before it translates
        "apiKeys": service.keys is not None,
        "keyRequired": service.keys is not None,
        "suggestions": service.suggestions is not None,
        "filesTranslation": service.files is not None,
        "supportedFilesFormat": supported_formats() if service.files is not None else [],
        "language": {
            "source": {"code": "auto", "name": "Auto Detect"},
            "target": {"code": first.tgt_lang, "name": language_name(first.tgt_lang)},
        },
    }


def _unique(alternatives: list[str], best: str) -> list[str]:
    """LibreTranslate's `filter_unique`: no repeats, no empty one, not the best translation again."""
    seen = {best, ""}
    return [a for a in alternatives if not (a in seen or seen.add(a))]
