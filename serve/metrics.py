"""Prometheus metrics of `nmt serve` (prometheus-client in multiprocess mode) and the GET /metrics route.

Every process of the server records into its own files under PROMETHEUS_MULTIPROC_DIR, a temporary directory that
`nmt serve` creates before anything imports prometheus_client (serve.metricsdir) and removes at shutdown; a scrape
adds up the files of all processes, so the counts of every HTTP process and every inference worker sum up. The HTTP
processes record requests (by route, method and status) and their latency; the workers record queue waits, batch
sizes, sentences and characters per language pair, cache hits and misses (the worker's own cache and the shared
one in Redis, apart), the model load time and that they are alive; both record whether Redis answers.
Labels never hold a key, a text or a raw path: routes outside the app's own are counted as "other".
"""

from __future__ import annotations

import glob
import os
import re
import time

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.metricsdir import MULTIPROC_ENV

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
OTHER_ROUTE = "other"

REQUESTS = Counter(
    "nmt_http_requests", "HTTP requests answered, by route, method and status", ["route", "method", "status"]
)
LATENCY = Histogram(
    "nmt_http_request_duration_seconds",
    "time from request to the end of the answer",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "nmt_queue_wait_seconds", "time a request waited in the queue before a worker took it", buckets=LATENCY_BUCKETS
)
BATCH_REQUESTS = Histogram("nmt_batch_requests", "requests per batch handed to a worker", buckets=SIZE_BUCKETS)
BATCH_SENTENCES = Histogram("nmt_batch_sentences", "sentences per batch handed to a worker", buckets=SIZE_BUCKETS)
SENTENCES = Counter("nmt_sentences", "sentences translated (cache hits included), by language pair", ["pair"])
CHARACTERS = Counter("nmt_characters", "characters of the sentences translated, by language pair", ["pair"])
CACHE_HITS = Counter("nmt_cache_hits", "sentences answered from a worker's translation cache")
CACHE_MISSES = Counter("nmt_cache_misses", "sentences a worker with a cache had to translate")
SHARED_CACHE_HITS = Counter(
    "nmt_shared_cache_hits", "sentences answered from the shared translation cache in Redis (--redis)"
)
SHARED_CACHE_MISSES = Counter(
    "nmt_shared_cache_misses", "sentences looked up in the shared cache (--redis) and translated"
)
REDIS_UP = Gauge(
    "nmt_redis_up",
    "1 while every live process reaches Redis for this use (quota, cache), 0 while one does not",
    ["use"],
    multiprocess_mode="livemin",
)
REDIS_ERRORS = Counter("nmt_redis_errors", "Redis commands that failed or timed out, by use (quota, cache)", ["use"])
CACHE_ENTRIES = Gauge(
    "nmt_cache_entries", "entries in the translation caches of live workers", multiprocess_mode="livesum"
)
CACHE_BYTES = Gauge(
    "nmt_cache_bytes", "approximate bytes held by the caches of live workers", multiprocess_mode="livesum"
)
WORKERS_ALIVE = Gauge(
    "nmt_workers_alive", "inference workers that have loaded their models", multiprocess_mode="livesum"
)
MODEL_LOAD = Gauge(
    "nmt_model_load_seconds", "seconds the last worker to load a model took", ["pair"], multiprocess_mode="mostrecent"
)


# ----- recording (called from the HTTP processes and the workers) -------------------------------------------------


def observe_queue_wait(seconds: float) -> None:
    QUEUE_WAIT.observe(max(seconds, 0.0))


def observe_batch(requests: int, sentences: int) -> None:
    BATCH_REQUESTS.observe(requests)
    BATCH_SENTENCES.observe(sentences)


def observe_translated(pair: str, texts: list[str]) -> None:
    SENTENCES.labels(pair).inc(len(texts))
    CHARACTERS.labels(pair).inc(sum(len(text) for text in texts))


def observe_cache(hits: int, misses: int, entries: int, size: int) -> None:
    CACHE_HITS.inc(hits)
    CACHE_MISSES.inc(misses)
    CACHE_ENTRIES.set(entries)
    CACHE_BYTES.set(size)


def observe_shared_cache(hits: int, misses: int) -> None:
    SHARED_CACHE_HITS.inc(hits)
    SHARED_CACHE_MISSES.inc(misses)


def redis_up(use: str, up: bool) -> None:
    REDIS_UP.labels(use).set(1 if up else 0)


def redis_failed(use: str) -> None:
    REDIS_ERRORS.labels(use).inc()
    REDIS_UP.labels(use).set(0)


def worker_ready(load_seconds: dict[str, float]) -> None:
    """A worker has loaded its models (pair -> seconds each) and answers from now on."""
    for pair, seconds in load_seconds.items():
        MODEL_LOAD.labels(pair).set(seconds)
    WORKERS_ALIVE.set(1)


def route_label(scope: Scope) -> str:
    """The route a request matched, from the app's own paths; anything else is "other" (bounded label values)."""
    path = scope.get("path", "")
    app = scope.get("app")
    known = getattr(app, "metric_routes", None)
    if known is None and app is not None:
        known = app.metric_routes = frozenset(getattr(route, "path", "") for route in app.routes)
    if known and path in known:
        return path
    if path.startswith("/static/"):
        return "/static"
    return OTHER_ROUTE


class MetricsMiddleware:
    """Counts every HTTP request by route, method and status, and its latency (outermost, with the access log)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = route_label(scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - start)


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


# ----- scraping ----------------------------------------------------------------------------------------------------

_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except (FileNotFoundError, IndexError):
        return False
    except OSError:  # not Linux: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def forget_dead_processes(path: str) -> None:
    """Drop the live-gauge files of processes that have exited (a worker that died or was restarted)."""
    for name in glob.glob(os.path.join(path, "gauge_live*.db")):
        match = _LIVE_FILE.search(name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), path)


class CacheRatioCollector:
    """nmt_cache_hit_ratio: hits / (hits + misses) over all workers, computed from the summed counters."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        totals = {"nmt_cache_hits_total": 0.0, "nmt_cache_misses_total": 0.0}
        for metric in self.source.collect():
            for sample in metric.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
        looked_up = sum(totals.values())
        ratio = totals["nmt_cache_hits_total"] / looked_up if looked_up else 0.0
        yield GaugeMetricFamily("nmt_cache_hit_ratio", "cache hits / (hits + misses) since the start", value=ratio)


def scrape() -> bytes:
    """The text exposition of every process's metrics (or of this process's, outside multiprocess mode)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        forget_dead_processes(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
    else:
        from prometheus_client import REGISTRY as registry
    output = CollectorRegistry()
    output.register(CacheRatioCollector(registry))
    return generate_latest(registry) + generate_latest(output)


def add_metrics_route(app: FastAPI) -> None:
    """GET /metrics (protected by the API key like every route unless `nmt serve --metrics-open`)."""

    @app.get("/metrics", summary="Prometheus metrics of every process of the server", response_model=None)
    async def metrics() -> Response:
        return Response(scrape(), media_type=CONTENT_TYPE_LATEST)
