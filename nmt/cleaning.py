"""Cleaning of the training pairs before tokenization: configured by `data.clean`, counted per filter.

Each pair is checked by the filters in `FILTERS` order and counted under the first one that drops it: the cheap
per-pair checks in one pass over the split, then exact duplicates (an 8-byte BLAKE2b hash per pair, 8 bytes of
memory per pair, never the strings), then the language identity (lingua, the slowest) on what is left. The result
(the kept pairs' indices and the counts) is cached beside the tokenization cache, keyed by the split's data
fingerprint, the languages and the settings, and the cleaned split gets a fingerprint of its own from the same key,
so that a change in the settings is a new tokenization cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nmt.config import CleanConfig
from nmt.errors import NMTError
from nmt.files import atomic_write_bytes

FORMAT = 1
MAX_RESULTS = 16  # cached cleaning results kept
BATCH = 10_000  # pairs read per batch
FILTERS = ("empty", "max_chars", "max_ratio", "min_letters", "same", "duplicates", "language")
KEEP = 0

# Markup counts as non-letters: HTML/XML tags and character entities.
_MARKUP = re.compile(r"<[^<>\n]{0,300}>|&(?:[A-Za-z][A-Za-z0-9]{1,9}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")


def letter_share(text: str) -> float:
    """Letters and combining marks (the vowel signs of Devanagari or Thai) outside markup, as a share of the text's
    non-space characters (0 for a blank text); digits, punctuation and symbols are not letters."""
    visible = len(text) - sum(map(str.isspace, text))
    if visible == 0:
        return 0.0
    plain = _MARKUP.sub("", text) if "<" in text or "&" in text else text
    letters = 0
    for c in plain:
        if c.isalpha() or (not c.isspace() and unicodedata.category(c)[0] == "M"):
            letters += 1
    return letters / visible


@dataclass
class CleanReport:
    """What cleaning did to one split: pairs read, kept, dropped per enabled filter, and the seconds it took."""

    pairs: int
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "kept": self.kept, "dropped": self.dropped, "seconds": round(self.seconds, 2)}

    def line(self) -> str:
        dropped = ", ".join(f"{name} {n:,}" for name, n in self.dropped.items()) or "nothing"
        return f"{self.pairs:,} pairs, {self.kept:,} kept; dropped: {dropped}"


class LanguageFilter:
    """lingua's detector over the pair's languages and `candidates`: a side detected in another language than its
    own is wrong; a side lingua cannot decide on (None) is kept."""

    def __init__(self, src_lang: str, tgt_lang: str, candidates: list[str]):
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        def language(code: str, key: str) -> Language:
            try:
                return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
            except (ValueError, AttributeError):
                raise NMTError(f"data.clean.language: lingua does not know the language '{code}' ({key})") from None

        self.src = language(src_lang, "data.src_lang")
        self.tgt = language(tgt_lang, "data.tgt_lang")
        others = [language(c, "data.clean.language_candidates") for c in candidates]
        languages = list(dict.fromkeys([self.src, self.tgt, *others]))
        self.detector = LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()

    def wrong(self, src: list[str], tgt: list[str]) -> np.ndarray:
        """A boolean per pair: either side detected in a language other than its own."""
        found_src = self.detector.detect_languages_in_parallel_of(src)
        found_tgt = self.detector.detect_languages_in_parallel_of(tgt)
        return np.fromiter(
            (
                (s is not None and s != self.src) or (t is not None and t != self.tgt)
                for s, t in zip(found_src, found_tgt, strict=True)
            ),
            dtype=bool,
            count=len(src),
        )


def _pair_hash(src: str, tgt: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{src}\0{tgt}".encode(), digest_size=8).digest(), "little")


def _reasons(src: list[str], tgt: list[str], clean: CleanConfig) -> np.ndarray:
    """The first cheap filter (1-based index in FILTERS) that drops each pair, KEEP for none."""
    codes = np.zeros(len(src), dtype=np.int8)
    empty, max_chars, max_ratio, min_letters, same = (FILTERS.index(n) + 1 for n in FILTERS[:5])
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        if clean.empty and (not s.strip() or not t.strip()):
            codes[i] = empty
        elif clean.max_chars is not None and max(len(s), len(t)) > clean.max_chars:
            codes[i] = max_chars
        elif clean.max_ratio is not None and _ratio(s, t) > clean.max_ratio:
            codes[i] = max_ratio
        elif clean.min_letters is not None and min(letter_share(s), letter_share(t)) < clean.min_letters:
            codes[i] = min_letters
        elif clean.same and s.strip() == t.strip():
            codes[i] = same
    return codes


def _ratio(src: str, tgt: str) -> float:
    a, b = len(src.strip()), len(tgt.strip())
    return max(a, b) / max(min(a, b), 1)


def clean_indices(
    ds, clean: CleanConfig, src_lang: str, tgt_lang: str, progress: Callable[[str], None] | None = None
) -> tuple[np.ndarray, CleanReport]:
    """The indices of the pairs of `ds` (columns `src`, `tgt`) that pass every enabled filter, and the counts."""
    start = time.perf_counter()
    n = len(ds)
    codes = np.zeros(n, dtype=np.int8)
    hashes = np.zeros(n if clean.duplicates else 0, dtype=np.uint64)
    position = 0
    for batch in ds.select_columns(["src", "tgt"]).iter(batch_size=BATCH):
        src, tgt = batch["src"], batch["tgt"]
        codes[position : position + len(src)] = _reasons(src, tgt, clean)
        if clean.duplicates:
            hashes[position : position + len(src)] = np.fromiter(
                map(_pair_hash, src, tgt), dtype=np.uint64, count=len(src)
            )
        position += len(src)
    if clean.duplicates:
        survivors = np.flatnonzero(codes == KEEP)
        _, first = np.unique(hashes[survivors], return_index=True)  # the first of each distinct pair
        repeated = np.ones(len(survivors), dtype=bool)
        repeated[first] = False
        codes[survivors[repeated]] = FILTERS.index("duplicates") + 1
        del hashes
    if clean.language:
        detector = LanguageFilter(src_lang, tgt_lang, clean.language_candidates)
        survivors = np.flatnonzero(codes == KEEP)
        done = 0
        for batch in ds.select_columns(["src", "tgt"]).select(survivors, keep_in_memory=True).iter(batch_size=BATCH):
            wrong = detector.wrong(batch["src"], batch["tgt"])
            codes[survivors[done : done + len(wrong)][wrong]] = FILTERS.index("language") + 1
            done += len(wrong)
            if progress and done % (20 * BATCH) == 0:
                progress(f"language filter: {done:,} of {len(survivors):,} pairs")
    counts = np.bincount(codes, minlength=len(FILTERS) + 1)
    enabled = _enabled(clean)
    dropped = {name: int(counts[i + 1]) for i, name in enumerate(FILTERS) if name in enabled}
    kept = np.flatnonzero(codes == KEEP)
    return kept, CleanReport(n, len(kept), dropped, time.perf_counter() - start)


def _enabled(clean: CleanConfig) -> list[str]:
    values = clean.model_dump()
    return [name for name in FILTERS if values[name] not in (None, False)]


def settings_key(fingerprint: str, clean: CleanConfig, src_lang: str, tgt_lang: str) -> str:
    """The cleaning result's key: the split's data fingerprint, the languages and every `data.clean` setting."""
    settings = json.dumps(clean.model_dump(mode="json"), sort_keys=True)
    text = f"nmt-clean-v{FORMAT}\0{fingerprint}\0{src_lang}-{tgt_lang}\0{settings}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cache_root():
    from nmt.token_cache import cache_root

    return cache_root("cleaned")


def clean_split(
    ds,
    clean: CleanConfig,
    src_lang: str,
    tgt_lang: str,
    log: Callable[[str], None] | None = None,
    name: str = "training data",
):
    """`ds` with the pairs that `clean` drops removed, and the report (None when no filter is enabled: `ds` itself).

    The cleaned split's fingerprint is the settings key, so a change in `data.clean` is a new tokenization."""
    if not clean.enabled():
        return ds, None
    key = settings_key(ds._fingerprint, clean, src_lang, tgt_lang)
    cached = _cache_root() / f"{key}.npz"
    report, from_cache = None, True
    if cached.is_file():
        try:
            with np.load(cached) as stored:
                kept = stored["kept"]
                report = CleanReport(**json.loads(str(stored["report"])))
            if len(kept) != report.kept or report.pairs != len(ds) or (len(kept) and kept[-1] >= len(ds)):
                raise ValueError("does not match the split")
            os.utime(cached)
        except (OSError, ValueError, KeyError, TypeError):
            report = None  # damaged: cleaned again below
    if report is None:
        if log:
            log(f"cleaning {name} ({len(ds):,} pairs: {', '.join(_enabled(clean))})")
        kept, report = clean_indices(ds, clean, src_lang, tgt_lang, log)
        _store(cached, kept, report)
        from_cache = False
    if log:
        log(f"cleaned {name}: {report.line()}" + (" (cached)" if from_cache else f" in {report.seconds:.1f} s"))
    if report.kept == 0:
        raise NMTError(f"no pairs of {name} left after cleaning ({report.line()}); loosen data.clean")
    selection = range(len(ds)) if report.kept == len(ds) else kept
    return ds.select(selection, keep_in_memory=True, new_fingerprint=key), report


def _store(path, kept: np.ndarray, report: CleanReport) -> None:
    """Cache a result (a cache that cannot be written only costs time); keep the newest MAX_RESULTS."""
    import io

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, kept=kept.astype(np.int64), report=json.dumps(report.to_dict()))
        atomic_write_bytes(path, buffer.getvalue())
        results = sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in results[MAX_RESULTS:]:
            old.unlink(missing_ok=True)
    except (OSError, NMTError):
        pass
