"""The LitServe `LitAPI` of the translation service: every inference worker holds every served model.

A worker receives `serve.translation.Work` items (sentences for one model, with decoding options), already
validated and split in the HTTP process, and answers each with its hypotheses. The requests of one batch that
share a model and options share one `Translator.translate` call (the same search as `nmt translate`).
"""

import logging
import time
from collections import defaultdict

import litserve as ls

from nmt.errors import NMTError
from serve import metrics
from serve.cache import SharedCache, TranslationCache, translate_with_cache
from serve.litserve_glue import WORK_PATH, IdleFriendlyBatchedLoop
from serve.logs import LOGGER, configure_logging
from serve.translation import Hypotheses, Work

logger = logging.getLogger(LOGGER)


class TranslationAPI(ls.LitAPI):
    """Translate `Work` with `nmt.prediction.Translator`; works with equal (model, options) share a search."""

    def __init__(
        self,
        model_dirs: dict[str, tuple[str, ...]],
        threads: int,
        dtype: str | None = None,
        log_level: str = "info",
        max_batch_size: int = 16,
        batch_timeout: float = 0.01,
        cache_entries: int = 0,
        cache_bytes: int = 0,
        redis_url: str | None = None,
        cache_ttl: int = 86400,
        redis_timeout: float = 0.25,
        model_ids: dict[str, str] | None = None,
    ):
        loop = IdleFriendlyBatchedLoop()  # for a batch of 1 too: LitServe's own loop would not report queue waits
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=WORK_PATH, loop=loop)
        self.model_dirs = model_dirs  # pair ("de-en") -> run directories (several: an ensemble)
        self.threads = threads
        self.dtype = dtype
        self.log_level = log_level
        self.cache_entries, self.cache_bytes = cache_entries, cache_bytes  # 0 entries: no cache
        self.redis_url, self.cache_ttl, self.redis_timeout = redis_url, cache_ttl, redis_timeout  # --redis
        self.model_ids = model_ids or {}  # pair -> the model's identity (serve.server.model_identity)
        self.translators: dict = {}
        self.cache: TranslationCache | None = None
        self.shared: SharedCache | None = None
        self.identities: dict[str, str] = {}  # pair -> what a cache entry is keyed by

    def setup(self, device: str) -> None:
        """Load every model once per worker, set its torch threads and check each translates (then /health is 200)."""
        import torch

        from nmt.prediction import Translator

        configure_logging(self.log_level)  # a spawned process: nothing is configured yet
        torch.set_num_threads(self.threads)
        start = time.perf_counter()
        load_seconds = {}
        for pair, model_dirs in self.model_dirs.items():
            loading = time.perf_counter()
            try:
                translator = Translator.from_run_dirs(list(model_dirs), device=device, dtype=self.dtype)
            except NMTError as e:  # a user error: one line, no traceback (LitServe would log one as it stops)
                logger.error("cannot load the model %s: %s", ",".join(model_dirs), e)
                logging.getLogger("litserve.loops.loops").disabled = True
                raise
            translator.translate(["warm-up"], beam_size=2)  # an exception here fails the worker: /health stays 503
            self.translators[pair] = translator
            load_seconds[pair] = time.perf_counter() - loading
            self.identities[pair] = f"{self.model_ids.get(pair, pair)}|{translator.precision}"
        if self.cache_entries > 0:
            self.cache = TranslationCache(self.cache_entries, self.cache_bytes)
        if self.redis_url and self.cache_ttl > 0:
            self.shared = SharedCache(self.redis_url, self.cache_ttl, self.redis_timeout)
        metrics.worker_ready(load_seconds)
        logger.info(
            "worker ready: %d model(s) (%s) on %s, %s, %d torch thread(s), loaded in %.1f s",
            len(self.translators),
            ", ".join(f"{pair} from {','.join(paths)}" for pair, paths in self.model_dirs.items()),
            device,
            ", ".join(sorted({t.precision for t in self.translators.values()})),
            torch.get_num_threads(),
            time.perf_counter() - start,
        )

    def decode_request(self, request: Work) -> Work:
        return request  # validated and split into sentences in the HTTP process (serve.translation.plan)

    def predict(self, works: list[Work] | Work) -> list[Hypotheses] | Hypotheses:
        """One `Translator.translate` call per distinct (model, beam_size, n_best, max_length) in the batch."""
        if isinstance(works, Work):  # max_batch_size 1: LitServe passes a single request
            return self.predict([works])[0]
        started = time.perf_counter()
        results: list = [None] * len(works)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, work in enumerate(works):
            groups[work.group].append(i)
        for (pair, options), members in groups.items():
            sentences = [s for i in members for s in works[i].sentences]
            counts: dict[str, int] = {}
            found, hits = translate_with_cache(
                self.cache,
                self.identities[pair],
                self.translators[pair].translate,
                sentences,
                options.beam_size,
                options.n_best,
                options.max_length,
                shared=self.shared,
                counts=counts,
            )
            metrics.observe_translated(pair, sentences)
            if self.cache is not None:
                metrics.observe_cache(hits, len(sentences) - hits, len(self.cache), self.cache.bytes)
            if counts:
                metrics.observe_shared_cache(counts["hits"], counts["misses"])
            offset = 0
            for i in members:
                n = len(works[i].sentences)
                results[i] = [[(h.text, h.score) for h in hyps] for hyps in found[offset : offset + n]]
                offset += n
        metrics.observe_batch(len(works), sum(len(work.sentences) for work in works))
        logger.debug(
            "batch: %d request(s), %d sentence(s), %d option group(s), %.1f ms",
            len(works),
            sum(len(work.sentences) for work in works),
            len(groups),
            (time.perf_counter() - started) * 1000,
        )
        return results

    def encode_response(self, output: Hypotheses) -> Hypotheses:
        return output
