"""The LitServe `LitAPI` of the translation service: one model per inference worker, batched beam search.

No `from __future__ import annotations` here: LitServe reads the annotations of `decode_request` and
`encode_response` at runtime to build the FastAPI route (request validation, OpenAPI schema).
"""

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import litserve as ls
from fastapi import Depends, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader

from nmt.bundle import read_metadata
from nmt.errors import NMTError
from serve import metrics
from serve.auth import key_matches
from serve.cache import TranslationCache, translate_with_cache
from serve.http import SENTENCE_COUNT_HEADER
from serve.logs import LOGGER, configure_logging
from serve.loop import IdleFriendlyBatchedLoop
from serve.schema import BatchTranslationResponse, TranslationRequest, TranslationResponse

logger = logging.getLogger(LOGGER)

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's API key, when it has one")


@dataclass(frozen=True)
class Job:
    """One decoded request: its sentences and decoding options."""

    texts: list[str]
    single: bool  # a `text` request (else `texts`)
    beam_size: int
    n_best: int | None  # None: no n-best list in the answer
    max_length: int | None

    @property
    def options(self) -> tuple[int, int, int | None]:
        return self.beam_size, self.n_best or 1, self.max_length


@dataclass(frozen=True)
class JobResult:
    job: Job
    hypotheses: list  # per text: list of nmt.prediction.Translation, best first


class TranslationAPI(ls.LitAPI):
    """Translate `text`/`texts` with `nmt.prediction.Translator`; requests with equal options share a search."""

    def __init__(
        self,
        model_dir: str,
        threads: int,
        quantize: str | None = None,
        api_key: str | None = None,
        log_level: str = "info",
        max_batch_size: int = 16,
        batch_timeout: float = 0.01,
        cache_entries: int = 0,
        cache_bytes: int = 0,
    ):
        # the same loop for a batch of 1 (LitServe's own would not report queue waits)
        loop = IdleFriendlyBatchedLoop()
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict", loop=loop)
        self.model_dir = model_dir
        self.threads = threads
        self.quantize = quantize
        self.api_key = api_key
        self.log_level = log_level
        self.cache_entries, self.cache_bytes = cache_entries, cache_bytes
        self.translator = None
        self.cache: TranslationCache | None = None
        self.pair = ""

    def setup(self, device: str) -> None:
        """Load the model once per worker, set its torch threads and check it translates (then /health is 200)."""
        import torch

        from nmt.prediction import Translator

        configure_logging(self.log_level)  # a spawned process: nothing is configured yet
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        try:
            self.translator = Translator.from_run_dir(self.model_dir, device=device, quantize=self.quantize)
        except NMTError as e:  # a user error: one line, no traceback (LitServe would log one as it stops the worker)
            logger.error("cannot load the model: %s", e)
            logging.getLogger("litserve.loops.loops").disabled = True
            raise
        self.translator.translate(["warm-up"], beam_size=2)  # an exception here fails the worker: /health stays 503
        meta = read_metadata(Path(self.model_dir))
        self.pair = f"{meta.get('src_lang')}-{meta.get('tgt_lang')}"
        if self.cache_entries > 0:
            self.cache = TranslationCache(self.cache_entries, self.cache_bytes)
        metrics.worker_ready({str(meta.get("name") or self.pair): time.perf_counter() - start})
        logger.info(
            "worker ready: model %s on %s, %d torch thread(s), loaded in %.1f s",
            self.model_dir,
            device,
            torch.get_num_threads(),
            time.perf_counter() - start,
        )

    def authorize(self, api_key: str | None = Depends(API_KEY_HEADER)) -> None:
        """FastAPI dependency of every LitServe route (replaces LitServe's own, non-constant-time check)."""
        if self.api_key is not None and not key_matches(api_key, self.api_key):
            raise HTTPException(status_code=401, detail="missing or invalid API key (send it in the X-API-Key header)")

    def decode_request(self, request: TranslationRequest) -> Job:
        single = request.text is not None
        return Job(
            texts=[request.text] if single else list(request.texts),
            single=single,
            beam_size=request.beam_size,
            n_best=request.n_best,
            max_length=request.max_length,
        )

    def predict(self, jobs: list[Job] | Job) -> list[JobResult] | JobResult:
        """One `Translator.translate` call per distinct (beam_size, n_best, max_length) in the batch."""
        if isinstance(jobs, Job):  # max_batch_size 1: LitServe passes a single request
            return self.predict([jobs])[0]
        started = time.perf_counter()
        hypotheses: list = [None] * len(jobs)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, job in enumerate(jobs):
            groups[job.options].append(i)
        for (beam_size, n_best, max_length), members in groups.items():
            texts = [text for i in members for text in jobs[i].texts]
            results, hits = translate_with_cache(
                self.cache, self.model_dir, self.translator.translate, texts, beam_size, n_best, max_length
            )
            metrics.observe_translated(self.pair, texts)
            if self.cache is not None:
                metrics.observe_cache(hits, len(texts) - hits, len(self.cache), self.cache.bytes)
            offset = 0
            for i in members:
                hypotheses[i] = results[offset : offset + len(jobs[i].texts)]
                offset += len(jobs[i].texts)
        metrics.observe_batch(len(jobs), sum(len(job.texts) for job in jobs))
        logger.debug(
            "batch: %d request(s), %d sentence(s), %d option group(s), %.1f ms",
            len(jobs),
            sum(len(job.texts) for job in jobs),
            len(groups),
            (time.perf_counter() - started) * 1000,
        )
        return [JobResult(job, hyps) for job, hyps in zip(jobs, hypotheses, strict=True)]

    def encode_response(self, output: JobResult) -> TranslationResponse | BatchTranslationResponse:
        job = output.job
        n_best = [[{"translation": h.text, "score": h.score} for h in hyps] for hyps in output.hypotheses]
        if job.single:
            body = {"translation": n_best[0][0]["translation"], "score": n_best[0][0]["score"]}
            if job.n_best is not None:
                body["n_best"] = n_best[0]
        else:
            body = {"translations": [h[0]["translation"] for h in n_best], "scores": [h[0]["score"] for h in n_best]}
            if job.n_best is not None:
                body["n_best"] = n_best
        # a Response passes through FastAPI as is; the annotation above documents the schema in /openapi.json
        return JSONResponse(body, headers={SENTENCE_COUNT_HEADER: str(len(job.texts))})
