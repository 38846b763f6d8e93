"""Translation cache of an inference worker: an LRU of sentence translations, bounded in entries and in bytes.

The key is everything that decides a translation: the model, the sentence and every decoding option (beam size,
n-best size, max length). A batch looks every sentence up first and sends only the misses (each distinct one
once) to `Translator.translate`, so a cached sentence inside a larger request is not translated again. A
sentence's translation does not depend on the other sentences of its batch (what `nmt translate` prints for a
line is what the server answers for it), so an answer is the same with and without the cache, byte for byte.

With `nmt serve --redis URL` a second level, `SharedCache`, sits behind the worker's own: the sentences missing
from it are looked up in Redis (one MGET), the ones still missing are translated and written to both (one
pipeline of SET with a TTL). An entry's Redis key is a SHA-256 of everything that decides the translation: the
model's identity (its pair, the SHA-256 of every member's weights, its length penalty, the search precision),
the sentence and the request's options; its value the n-best list as JSON, whose floats read back exactly, so a
shared hit is byte-identical too. Any Redis failure or timeout only means a miss (serve.redisconn).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from cachetools import LRUCache

from serve.redisconn import DEFAULT_TIMEOUT, Breaker, client_options

ENTRY_OVERHEAD = 200  # bytes per entry beyond its strings: key tuple, list, Translation objects, LRU links


def entry_bytes(key: tuple, hypotheses: Sequence[Any]) -> int:
    """What one entry costs, approximately: its strings (as Python stores them) plus a fixed overhead."""
    strings = [part for part in key if isinstance(part, str)] + [h.text for h in hypotheses]
    return ENTRY_OVERHEAD + sum(sys.getsizeof(s) for s in strings) + 64 * len(hypotheses)


class _BytesLRU(LRUCache):
    """cachetools' LRU bounded in bytes (`maxsize` with `getsizeof`), and in entries too."""

    def __init__(self, max_entries: int, max_bytes: int):
        super().__init__(maxsize=max_bytes, getsizeof=lambda value: value[0])
        self.max_entries = max_entries

    def __setitem__(self, key: Hashable, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self.max_entries:
            self.popitem()  # the least recently used


class TranslationCache:
    """LRU of n-best lists keyed by (model, sentence, beam_size, n_best, max_length); thread-safe."""

    def __init__(self, max_entries: int, max_bytes: int):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a cache needs room for at least one entry and one byte")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._lru = _BytesLRU(max_entries, max_bytes)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def bytes(self) -> int:
        return self._lru.currsize

    def get(self, key: tuple) -> list | None:
        with self._lock:
            value = self._lru.get(key)
        return None if value is None else value[1]

    def put(self, key: tuple, hypotheses: list) -> None:
        size = entry_bytes(key, hypotheses)
        if size > self.max_bytes:
            return  # cachetools would raise: an entry larger than the whole cache is simply not kept
        with self._lock:
            self._lru[key] = (size, hypotheses)


class SharedHypothesis:
    """A hypothesis read back from the shared cache: what the worker reads of `nmt.prediction.Translation`."""

    __slots__ = ("text", "score")

    def __init__(self, text: str, score: float):
        self.text, self.score = text, score


class SharedCache:
    """The translation cache every replica shares in Redis at `url`: entries expire after `ttl` seconds (and the
    server's maxmemory policy evicts the least recently used first); every command gives up after `timeout`."""

    PREFIX = "nmt-tc:"

    def __init__(self, url: str, ttl: int, timeout: float = DEFAULT_TIMEOUT):
        import redis

        self.url, self.ttl = url, ttl
        self.client = redis.Redis.from_url(url, **client_options(timeout))
        self.breaker = Breaker("cache", url)

    def key(self, model: str, text: str, beam_size: int, n_best: int, max_length: int | None) -> str:
        """The Redis key of one entry: a SHA-256 of the model's identity, the sentence and the options."""
        material = json.dumps([model, text, beam_size, n_best, max_length], ensure_ascii=False)
        return self.PREFIX + hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()

    def get_many(self, keys: list[str]) -> list[list | None]:
        """The entries of `keys` (None for each missing one; all None while Redis is unreachable)."""
        if not keys or not self.breaker.usable():
            return [None] * len(keys)
        try:
            values = self.client.mget(keys)
        except Exception as e:  # redis-py's ConnectionError, TimeoutError, ResponseError; an OSError
            self.breaker.failed(e)
            return [None] * len(keys)
        self.breaker.succeeded()
        found: list[list | None] = []
        for value in values:
            try:
                found.append(None if value is None else [SharedHypothesis(t, s) for t, s in json.loads(value)])
            except (ValueError, TypeError):  # not an entry of ours: a miss
                found.append(None)
        return found

    def put_many(self, entries: dict[str, list]) -> None:
        """Store `entries` (key -> hypotheses) with the TTL; skipped while Redis is unreachable."""
        if not entries or not self.breaker.usable():
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for key, hypotheses in entries.items():
                    value = json.dumps([[h.text, h.score] for h in hypotheses], ensure_ascii=False)
                    pipe.set(key, value.encode("utf-8", "surrogatepass"), ex=self.ttl)
                pipe.execute()
        except Exception as e:
            self.breaker.failed(e)
            return
        self.breaker.succeeded()


Translate = Callable[[list[str], int, int, "int | None"], list[list[Any]]]


def translate_with_cache(
    cache: TranslationCache | None,
    model: str,
    translate: Translate,
    texts: list[str],
    beam_size: int,
    n_best: int,
    max_length: int | None,
    shared: SharedCache | None = None,
    counts: dict[str, int] | None = None,
) -> tuple[list[list[Any]], int]:
    """`translate(texts, beam_size, n_best, max_length)` through `cache` (None: no cache) and then `shared` (None:
    none): the n-best lists in order, and how many texts were answered from `cache`. Only the distinct texts
    missing from both are translated; `counts`, when given, receives the shared cache's "hits" and "misses"."""
    if not texts:
        return [], 0
    if cache is None and shared is None:
        return translate(texts, beam_size, n_best, max_length), 0
    keys = [(model, text, beam_size, n_best, max_length) for text in texts]
    results: list = [None if cache is None else cache.get(key) for key in keys]
    hits = sum(result is not None for result in results)
    missing = list(dict.fromkeys(text for text, result in zip(texts, results, strict=True) if result is None))
    found: dict[str, list] = {}
    if shared is not None and missing:
        shared_keys = {text: shared.key(model, text, beam_size, n_best, max_length) for text in missing}
        for text, value in zip(missing, shared.get_many(list(shared_keys.values())), strict=True):
            if value is not None:
                found[text] = value
        if counts is not None:
            counts["hits"], counts["misses"] = len(found), len(missing) - len(found)
    to_translate = [text for text in missing if text not in found]
    if to_translate:
        translated = dict(zip(to_translate, translate(to_translate, beam_size, n_best, max_length), strict=True))
        if shared is not None:
            shared.put_many({shared_keys[text]: hypotheses for text, hypotheses in translated.items()})
        found.update(translated)
    for i, text in enumerate(texts):
        if results[i] is None:
            results[i] = found[text]
    if cache is not None:
        for text in missing:
            cache.put((model, text, beam_size, n_best, max_length), found[text])
    return results, hits
