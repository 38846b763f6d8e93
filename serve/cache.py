"""Translation cache of an inference worker: an LRU of sentence translations, bounded in entries and in bytes.

The key is everything that decides a translation: the model, the sentence and every decoding option (beam size,
n-best size, max length). A batch looks every sentence up first and sends only the misses (each distinct one
once) to `Translator.translate`, so a cached sentence inside a larger request is not translated again. A
sentence's translation does not depend on the other sentences of its batch (what `nmt translate` prints for a
line is what the server answers for it), so an answer is the same with and without the cache, byte for byte.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from cachetools import LRUCache

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


Translate = Callable[[list[str], int, int, "int | None"], list[list[Any]]]


def translate_with_cache(
    cache: TranslationCache | None,
    model: str,
    translate: Translate,
    texts: list[str],
    beam_size: int,
    n_best: int,
    max_length: int | None,
) -> tuple[list[list[Any]], int]:
    """`translate(texts, beam_size, n_best, max_length)` through `cache` (None: no cache): the n-best lists in order,
    and how many texts were answered from the cache. Only the distinct missing texts are translated."""
    if not texts:
        return [], 0
    if cache is None:
        return translate(texts, beam_size, n_best, max_length), 0
    keys = [(model, text, beam_size, n_best, max_length) for text in texts]
    results: list = [cache.get(key) for key in keys]
    hits = sum(result is not None for result in results)
    missing = list(dict.fromkeys(text for text, result in zip(texts, results, strict=True) if result is None))
    if missing:
        translated = dict(zip(missing, translate(missing, beam_size, n_best, max_length), strict=True))
        for i, text in enumerate(texts):
            if results[i] is None:
                results[i] = translated[text]
        for text in missing:
            cache.put((model, text, beam_size, n_best, max_length), translated[text])
    return results, hits
