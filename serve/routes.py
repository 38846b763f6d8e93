"""The HTTP routes of the native API: GET /, /health, /info and POST /predict (the LibreTranslate-compatible routes
are in serve.libretranslate). Both route families go through `Service.translate` (serve.service)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from nmt import __version__
from serve import file_routes, libretranslate
from serve.middleware import SENTENCE_COUNT_HEADER
from serve.schema import BatchTranslationResponse, TranslationRequest, TranslationResponse, n_best_message
from serve.service import PairError, Service
from serve.translation import Options


class Unprocessable(HTTPException):
    """A 422 raised after validation (a check that needs the chosen model)."""

    def __init__(self, detail: str):
        super().__init__(422, detail)


def register_routes(app: FastAPI, service: Service, workers_ready: Any) -> None:
    """Add every route to `app`; `workers_ready()` says whether every inference worker has loaded the models."""

    @app.get("/", summary="What this server is", response_model=None)
    async def index() -> JSONResponse:
        body = {"name": app.title, "version": __version__, "pairs": list(service.models), "docs": "/docs"}
        return JSONResponse(body)

    @app.get("/health", summary="200 once every worker has loaded every model, else 503", response_model=None)
    async def health() -> JSONResponse:
        if workers_ready():
            return JSONResponse({"status": "ok", "pairs": list(service.models)})
        return JSONResponse({"detail": "not ready: the models are still loading"}, status_code=503)

    @app.get("/info", summary="The served models, limits and runtime", response_model=None)
    async def info() -> JSONResponse:
        models = [model.info for model in service.models.values()]
        pairs = {"direct": list(service.models), "pivot": service.pivots}  # pivot: through English (/translate)
        return JSONResponse({"models": models, "pairs": pairs, "limits": service.limits.to_dict()})

    @app.post("/predict", summary="Translate one text (text) or several (texts)", response_model=None)
    async def predict(request: TranslationRequest) -> TranslationResponse | BatchTranslationResponse:
        try:
            model = service.find(request.source, request.target, request.model)
        except PairError as e:
            raise HTTPException(400, str(e)) from None
        beam_size = request.beam_size or model.default_beam_size
        if request.n_best is not None and request.n_best > beam_size:
            raise Unprocessable(n_best_message(request.n_best, beam_size))
        options = Options(beam_size, request.n_best or 1, request.max_length)
        single = request.text is not None
        texts = [request.text] if single else list(request.texts)
        results = await service.translate(texts, model, options)
        n_best = [[{"translation": t, "score": s} for t, s in [(r.text, r.score), *r.alternatives]] for r in results]
        if single:
            body: dict[str, Any] = {"translation": results[0].text, "score": results[0].score}
            if request.n_best is not None:
                body["n_best"] = n_best[0]
        else:
            body = {"translations": [r.text for r in results], "scores": [r.score for r in results]}
            if request.n_best is not None:
                body["n_best"] = n_best
        sentences = sum(r.sentences for r in results)
        return JSONResponse(body, headers={SENTENCE_COUNT_HEADER: str(sentences)})

    libretranslate.register_routes(app, service)
    file_routes.register_file_routes(app, service)
