"""`nmt bench serve`: load-test a running `nmt serve` from K client threads."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.bench.common import (
    API_KEY_ENV,
    DEFAULT_TEST_SPLIT,
    machine_info,
    percentile,
    positive_int,
    positive_seconds,
)
from nmt.cli_types import fraction
from nmt.errors import NMTError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="base URL of the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--concurrency", type=positive_int, default=8, help="client threads, one request at a time each")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--duration", type=positive_seconds, help="run for this many seconds")
    amount.add_argument("--requests", type=positive_int, help="send this many requests in all")
    p.add_argument("--texts-per-request", type=positive_int, default=1, help="1 sends 'text', more send 'texts'")
    p.add_argument("--beam-size", type=positive_int, help="beam size of every request (default: the server's)")
    p.add_argument(
        "--input", help=f"sentences, one per line (default: $NMT_DATA_DIR/{DEFAULT_TEST_SPLIT}.<source language>)"
    )
    p.add_argument("--source", help="source language of every request (needed when the server has several models)")
    p.add_argument("--target", help="target language of every request (needed when the server has several models)")
    p.add_argument(
        "--repeat-share",
        type=fraction,
        default=0.0,
        help="share of sentences drawn from a small pool that repeats (0 to 1; e.g. 0.8 to measure the cache); "
        "the others are sent once each (default: 0, cycle through the input)",
    )
    p.add_argument(
        "--repeat-pool", type=positive_int, default=100, help="sentences in the repeated pool (default: 100)"
    )
    p.add_argument("--api-key", help=f"X-API-Key to send (default: ${API_KEY_ENV})")
    p.add_argument("--timeout", type=positive_seconds, default=60.0, help="seconds per request (default: 60)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=bench_serve)


class SentencePicker:
    """The sentences of each request. With a repeat share p, each sentence is with probability p one of the first
    `pool` input sentences (seeded by its position: the same run sends the same mix), else the next sentence of the
    rest of the input sent once (cycling only when the input runs out). Counts what was really repeated."""

    def __init__(self, sentences: list[str], per_request: int, repeat_share: float = 0.0, pool: int = 100):
        self.sentences, self.per_request, self.repeat_share = sentences, per_request, repeat_share
        self.pool = min(pool, max(1, len(sentences) - 1)) if repeat_share > 0 else 0
        self.lock = threading.Lock()
        self.fresh = 0
        self.sent: set[str] = set()
        self.total = self.repeated = 0

    def texts(self, index: int) -> list[str]:
        start = index * self.per_request
        if not self.repeat_share:
            texts = [self.sentences[(start + j) % len(self.sentences)] for j in range(self.per_request)]
        else:
            texts = []
            for slot in range(start, start + self.per_request):
                rng = random.Random(slot)
                if rng.random() < self.repeat_share:
                    texts.append(self.sentences[rng.randrange(self.pool)])
                else:
                    with self.lock:
                        self.fresh += 1
                        fresh = self.fresh - 1
                    rest = self.sentences[self.pool :] or self.sentences
                    texts.append(rest[fresh % len(rest)])
        with self.lock:
            self.total += len(texts)
            for text in texts:
                self.repeated += text in self.sent
                self.sent.add(text)
        return texts


@dataclass
class Tally:
    """Results shared by the client threads (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0
    latencies: list[float] = field(default_factory=list)
    sentences: int = 0
    errors: Counter = field(default_factory=Counter)
    answers: dict[str, Any] | None = None  # request body -> first translation(s) seen, when answers are compared
    picker: Any = None  # the SentencePicker of the run (what share of sentences really repeated)

    def consistent(self, body: dict[str, Any], answer: dict[str, Any]) -> bool:
        """False when the same request got other translations before (scores may differ in the last digits)."""
        if self.answers is None:
            return True
        translations = answer.get("translation", answer.get("translations"))
        with self.lock:
            return self.answers.setdefault(json.dumps(body, sort_keys=True), translations) == translations

    def next_request(self, limit: int | None, deadline: float | None) -> int | None:
        with self.lock:
            if (limit is not None and self.issued >= limit) or (deadline is not None and time.monotonic() >= deadline):
                return None
            self.issued += 1
            return self.issued - 1


def read_sentences(args: argparse.Namespace, src_lang: str) -> list[str]:
    if args.input:
        path = Path(args.input)
    else:
        data_dir = os.environ.get("NMT_DATA_DIR")
        if not data_dir:
            raise NMTError("bench serve needs --input FILE or NMT_DATA_DIR (for the Multi30k test set)")
        path = Path(data_dir) / f"{DEFAULT_TEST_SPLIT}.{src_lang}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NMTError(f"missing file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NMTError(f"cannot read {path}: {e}") from None
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise NMTError(f"no sentences in {path}")
    return sentences


def server_info(session, url: str, timeout: float) -> dict[str, Any]:
    """GET /health and /info; NMTError when the server is not reachable, not ready or refuses the key."""
    import requests

    try:
        health = session.get(f"{url}/health", timeout=timeout)
        info = session.get(f"{url}/info", timeout=timeout)
    except requests.RequestException as e:
        raise NMTError(f"cannot reach the server at {url}: {e.__class__.__name__}") from None
    if health.status_code == 401:
        raise NMTError(f"{url} refused the API key (give --api-key or set {API_KEY_ENV})")
    if health.status_code != 200:
        raise NMTError(f"{url}/health answered {health.status_code}: the server is not ready")
    try:
        return info.json() if info.status_code == 200 else {}
    except ValueError:
        return {}


def _model_info(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The /info entry of the model the requests go to: the only one, or the one for --source/--target."""
    if info.get("model"):
        return info["model"]
    pair = _pair(args)
    fits = [
        m
        for m in info.get("models") or []
        if pair.get("source") in (None, m.get("src_lang")) and pair.get("target") in (None, m.get("tgt_lang"))
    ]
    return fits[0] if len(fits) == 1 else {}


def request_body(
    sentences: list[str], index: int, per_request: int, beam_size: int | None, pair: dict[str, str] | None = None
) -> dict[str, Any]:
    """JSON body of request number `index`: the next `per_request` sentences, cycling through the input."""
    return body_of(SentencePicker(sentences, per_request).texts(index), beam_size, pair)


def body_of(texts: list[str], beam_size: int | None, pair: dict[str, str] | None = None) -> dict[str, Any]:
    """`text` for one sentence, else `texts`; `beam_size` and the pair when given."""
    body: dict[str, Any] = {"text": texts[0]} if len(texts) == 1 else {"texts": texts}
    if beam_size is not None:
        body["beam_size"] = beam_size
    body.update(pair or {})
    return body


def _pair(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k in ("source", "target") if (v := getattr(args, k, None))}  # `bench soak` has neither


def _client(args: argparse.Namespace, headers: dict, picker: SentencePicker, tally: Tally, deadline: float | None):
    import requests

    with requests.Session() as session:
        while (index := tally.next_request(args.requests, deadline)) is not None:
            body = body_of(picker.texts(index), args.beam_size, _pair(args))
            start = time.perf_counter()
            try:
                response = session.post(f"{args.url}/predict", json=body, headers=headers, timeout=args.timeout)
                ok, error = response.status_code == 200, f"HTTP {response.status_code}"
                if ok and not tally.consistent(body, response.json()):
                    ok, error = False, "another answer than before"
            except (requests.RequestException, ValueError) as e:  # ValueError: a 200 that is not JSON
                ok, error = False, e.__class__.__name__
            latency = time.perf_counter() - start
            with tally.lock:
                if ok:
                    tally.latencies.append(latency)
                    tally.sentences += args.texts_per_request
                else:
                    tally.errors[error] += 1


def run_load(
    args: argparse.Namespace, headers: dict, sentences: list[str], duration: float | None, tally: Tally | None = None
) -> tuple[Tally, float]:
    """`args.concurrency` client threads against `args.url` for `duration` seconds (or `args.requests` requests)."""
    tally = tally or Tally()
    tally.picker = SentencePicker(
        sentences, args.texts_per_request, getattr(args, "repeat_share", 0.0), getattr(args, "repeat_pool", 100)
    )
    start = time.monotonic()
    deadline = start + duration if duration else None
    threads = [
        threading.Thread(target=_client, args=(args, headers, tally.picker, tally, deadline), daemon=True)
        for _ in range(args.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.monotonic() - start


def bench_serve(args: argparse.Namespace) -> int:
    """Send requests from `--concurrency` threads; report throughput, latency percentiles and errors."""
    import requests

    args.url = args.url.rstrip("/")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"X-API-Key": api_key} if api_key else {}
    with requests.Session() as session:
        session.headers.update(headers)
        info = _model_info(server_info(session, args.url, args.timeout), args)
    sentences = read_sentences(args, info.get("src_lang") or "de")
    tally, seconds = run_load(args, headers, sentences, args.duration)
    report = serve_report(args, tally, seconds, info)
    _print_serve_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not tally.latencies:
        raise NMTError(f"no request succeeded ({dict(tally.errors)})")
    return 0


def serve_report(args: argparse.Namespace, tally: Tally, seconds: float, info: dict[str, Any]) -> dict[str, Any]:
    latencies = sorted(tally.latencies)
    ms = {f"p{q}": round(percentile(latencies, q) * 1000, 1) for q in (50, 95, 99)} if latencies else {}
    if latencies:
        ms["mean"] = round(sum(latencies) / len(latencies) * 1000, 1)
        ms["max"] = round(latencies[-1] * 1000, 1)
    return {
        "benchmark": "serve",
        "url": args.url,
        "concurrency": args.concurrency,
        "texts_per_request": args.texts_per_request,
        "repeat_share": getattr(args, "repeat_share", 0.0),
        "repeated_sentences": round(tally.picker.repeated / tally.picker.total, 3) if tally.picker.total else 0.0,
        "beam_size": args.beam_size or (info.get("decode") or {}).get("beam_size"),
        "seconds": round(seconds, 2),
        "requests": len(latencies),
        "sentences": tally.sentences,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "sentences_per_s": round(tally.sentences / seconds, 2),
        "latency_ms": ms,
        "machine": machine_info(),
        "server": info.get("runtime"),
    }


def _print_serve_report(report: dict[str, Any]) -> None:
    ms, machine, server = report["latency_ms"], report["machine"], report["server"] or {}
    lines = [
        f"{report['url']}: {report['concurrency']} clients, {report['texts_per_request']} text(s) per request, "
        f"beam {report['beam_size']}, {report['seconds']} s, "
        f"{report['repeated_sentences']:.0%} of the sentences sent had been sent before",
        f"requests: {report['requests']} ok, {report['errors']} errors {report['error_kinds'] or ''}".rstrip(),
        f"throughput: {report['requests_per_s']} requests/s, {report['sentences_per_s']} sentences/s",
    ]
    if ms:
        lines.append(f"latency: p50 {ms['p50']} ms, p95 {ms['p95']} ms, p99 {ms['p99']} ms, max {ms['max']} ms")
    lines.append(
        f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads)"
    )
    if server:
        lines.append(
            f"server: {server.get('workers')} worker(s) x {server.get('threads_per_worker')} thread(s), "
            f"max batch {server.get('max_batch_size')}, batch timeout {server.get('batch_timeout')} s"
        )
    print("\n".join(lines), file=sys.stdout)
