"""POST /translate_file and GET /download_file/<name>, as in LibreTranslate 1.9 (its `libretranslate/app.py`).

A multipart form with `file`, `source` (a code or auto), `target` and `api_key`; the answer is
`{"translatedFileUrl": "<base url>/download_file/<uuid>.<name>"}`. The file's format comes from its extension
(serve.files: one reader and writer per format); all its texts go through `Service.translate_route` in one call
(sentences batched with every other request; paragraphs with formatting through the HTML path), so a pivot pair
works as on /translate and a key's characters per day count the file's sentences (serve.quota, charged as the
sentences are queued). Checks in LibreTranslate's order with its messages; then the file: over --max-file-bytes is
413, a file that is not its format (or hostile: zip bomb, XML entities) or has no text is 400, more characters than
--max-chars is 400.

Translated files are written to a directory (serve.filestore: --files-dir, else a private temporary directory removed
when the server stops), named `<uuid4>.<safe name>`, and deleted --file-ttl seconds after they were written (every
upload and download sweeps); a name that is not one of them, or has expired, is 404.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from serve.files import FORMATS, MEDIA_TYPES, Extracted, FileError, extension, extract
from serve.jsonbody import shown
from serve.languages import Detection
from serve.libretranslate import LTError, check_key, language_code, missing, read_params
from serve.logs import LOGGER
from serve.middleware import SENTENCE_COUNT_HEADER
from serve.service import PairError, Service
from serve.translation import Options

logger = logging.getLogger(LOGGER)

FORM_OVERHEAD = 64 << 10  # bytes of a multipart body besides the file (boundaries, headers, the other fields)
NOT_FOUND = "File not found (translated files are kept for a limited time)"
DISABLED = "Files translation are disabled on this server."


async def _form(request: Request) -> tuple[dict[str, Any], UploadFile | None]:
    """The parameters (serve.libretranslate.read_params: query string over the form) and the uploaded `file`."""
    params = await read_params(request)
    upload = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()  # parsed once by read_params, cached
        found = form.get("file")
        upload = found if isinstance(found, UploadFile) else None
    return params, upload


def _detect(service: Service, found: Extracted) -> Detection:
    return service.detector.detect(" ".join(found.plain)[:10000], 1)[0]


def register_file_routes(app: FastAPI, service: Service) -> None:
    """Add /translate_file and /download_file/<name> (answered 403 when `service.files` is None)."""

    @app.post("/translate_file", summary="Translate a file (LibreTranslate API)", response_model=None)
    async def translate_file(request: Request) -> JSONResponse:
        store = service.files
        if store is None:
            raise LTError(403, DISABLED)
        params, upload = await _form(request)
        await check_key(service, params)
        if upload is None:
            raise missing("file")
        if not params.get("source"):
            raise missing("source")
        if not params.get("target"):
            raise missing("target")
        filename = upload.filename or ""
        if filename == "":
            raise LTError(400, "Invalid request: empty file")
        if extension(filename) not in FORMATS:
            raise LTError(400, "Invalid request: file format not supported")
        source, target = language_code(service, params["source"]), language_code(service, params["target"])
        if source != "auto" and source not in service.languages:
            raise LTError(400, f"{shown(source)} is not supported")
        if target not in service.languages:
            raise LTError(400, f"{shown(target)} is not supported")
        size = upload.size if upload.size is not None else 0
        if size > store.max_bytes:
            raise LTError(413, f"Invalid request: file ({size} bytes) exceeds the size limit ({store.max_bytes} bytes)")
        data = await upload.read(store.max_bytes + 1)
        if len(data) > store.max_bytes:
            raise LTError(413, f"Invalid request: file exceeds the size limit ({store.max_bytes} bytes)")
        if not data:
            raise LTError(400, "Invalid request: empty file")
        try:
            found = await run_in_threadpool(extract, filename, data)
        except FileError as e:
            raise LTError(400, f"Invalid request: {e}") from None
        except Exception as e:  # a reader's library failing on a hostile file in a way not foreseen: still the file's
            logger.warning("translate_file: %s could not be read", extension(filename), exc_info=e)
            raise LTError(400, "Invalid request: cannot read this file") from None
        if not found.texts:
            raise LTError(400, "Invalid request: empty file (no text to translate)")
        limit = service.limits.max_chars
        if found.characters > limit:
            raise LTError(400, f"Invalid request: request ({found.characters}) exceeds text limit ({limit})")
        try:
            if source == "auto":
                source = (await run_in_threadpool(_detect, service, found)).language
            route = service.route(source, target)
        except PairError as e:
            raise LTError(400, str(e)) from None
        beam = route[-1].default_beam_size if route else 1
        results = await service.translate_route(found.texts, route, Options(beam), found.html)
        try:
            translated = await run_in_threadpool(found.rebuild, [r.text for r in results])
        except Exception as e:  # a writer's library refusing what its reader accepted: the file's, as above
            logger.warning("translate_file: %s could not be written", extension(filename), exc_info=e)
            raise LTError(400, "Invalid request: cannot write the translated file") from None
        name = await run_in_threadpool(store.save, filename, translated)
        url = f"{str(request.base_url).rstrip('/')}/download_file/{name}"
        sentences = sum(r.sentences for r in results)  # for the access log, as on /translate
        return JSONResponse({"translatedFileUrl": url}, headers={SENTENCE_COUNT_HEADER: str(sentences)})

    @app.get("/download_file/{name}", summary="Download a translated file (LibreTranslate API)", response_model=None)
    async def download_file(name: str) -> Response:
        store = service.files
        if store is None:
            raise LTError(403, DISABLED)
        data = await run_in_threadpool(store.read, name)
        if data is None:
            raise LTError(404, NOT_FOUND)
        download = name.split(".", 1)[1]  # LibreTranslate's download name: without the uuid
        return Response(
            data,
            media_type=MEDIA_TYPES.get(extension(download), "application/octet-stream"),
            headers={"Content-Disposition": f'attachment; filename="{download}"'},
        )
