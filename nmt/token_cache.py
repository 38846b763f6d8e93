"""The tokenized-corpus cache: each split is encoded once into memory-mapped id files, found again by content.

An entry's key hashes what changes the result: the split's data fingerprint (the `datasets` fingerprint of the
loaded split, which follows the data files and the selection of examples), the SHA-256 of each SentencePiece model
and this module's format version. A second run on the same data and tokenizer opens the entry instead of tokenizing;
processes that ask for the same entry at the same time (torchrun, two runs) take a file lock: the first tokenizes,
the others wait and read. Entries built from the same source whose data has changed since are removed, and only
the `MAX_ENTRIES` most recently used entries are kept.

SentencePiece models are cached the same way (`sentencepiece/`, keyed by the data fingerprint and the tokenizer
settings; SentencePiece training is deterministic), so a second run into another run directory neither retrains
them nor tokenizes. The root is `$NMT_CACHE_DIR`, else `$XDG_CACHE_HOME/nmt` (`~/.cache/nmt`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from nmt.config import TokenizerConfig
from nmt.data import TokenizedCorpus
from nmt.errors import NMTError
from nmt.files import atomic_write_bytes, atomic_write_json
from nmt.tokenizer import Tokenizer, train_sentencepiece

FORMAT = 1
MAX_ENTRIES = 4
MAX_TOKENIZERS = 16
ENCODE_BATCH = 10_000  # sentences encoded per call
META_FILE = "meta.json"


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> list[list[int]]: ...


def cache_root(kind: str = "tokenized") -> Path:
    explicit = os.environ.get("NMT_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nmt" / kind


def cache_key(data_fingerprint: str, src_model: bytes, tgt_model: bytes) -> str:
    """The entry name: a hash of the data fingerprint and the tokenizer models' contents."""
    h = hashlib.sha256(f"nmt-tokenized-v{FORMAT}\0{data_fingerprint}\0".encode())
    h.update(hashlib.sha256(src_model).digest())
    h.update(hashlib.sha256(tgt_model).digest())
    return h.hexdigest()[:32]


def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def _encode_side(ds, column: str, tok: Encoder, dtype: np.dtype, path: Path) -> np.ndarray:
    """Stream one column's ids to a raw file (never the whole corpus in memory); returns the lengths."""
    lengths: list[np.ndarray] = []
    with open(path, "wb") as f:
        for batch in ds.select_columns([column]).iter(batch_size=ENCODE_BATCH):
            ids = tok.encode(batch[column])
            n = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(n.sum()))
            f.write(flat.tobytes())
            lengths.append(n)
        f.flush()
        os.fsync(f.fileno())
    return np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)


def tokenize(ds, src_tok: Encoder, tgt_tok: Encoder, directory: Path, vocab_size: int = 65536) -> TokenizedCorpus:
    """Encode both sides of `ds` into `directory` (ids and offsets as flat files) and open them memory-mapped."""
    dtype = _id_dtype(vocab_size)
    offsets = {}
    for side, tok in (("src", src_tok), ("tgt", tgt_tok)):
        lengths = _encode_side(ds, side, tok, dtype, directory / f"{side}_ids.bin")
        offsets[side] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        np.save(directory / f"{side}_offsets.npy", offsets[side])
    atomic_write_json(directory / META_FILE, {"format": FORMAT, "dtype": dtype.name, "pairs": len(ds)})
    return open_entry(directory)


def open_entry(directory: Path) -> TokenizedCorpus:
    """A cache entry's arrays: ids memory-mapped (paged in by the OS as batches touch them), offsets in memory.
    Raises ValueError when the entry is damaged (files missing, truncated or inconsistent)."""
    try:
        meta = json.loads((directory / META_FILE).read_text())
        dtype = np.dtype(meta["dtype"])
        sides = []
        for side in ("src", "tgt"):
            offsets = np.load(directory / f"{side}_offsets.npy")
            ids_path = directory / f"{side}_ids.bin"
            n = int(offsets[-1])
            if len(offsets) != meta["pairs"] + 1 or ids_path.stat().st_size != n * dtype.itemsize:
                raise ValueError(f"{ids_path.name} does not match its offsets")
            # np.memmap cannot map an empty file
            ids = np.memmap(ids_path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype=dtype)
            sides += [ids, offsets]
    except (OSError, KeyError, TypeError, IndexError, ValueError) as e:
        raise ValueError(f"damaged tokenization cache entry {directory}: {e}") from None
    return TokenizedCorpus(*sides)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _entries(root: Path) -> list[tuple[Path, dict]]:
    out = []
    for directory in root.iterdir():
        meta_path = directory / META_FILE
        if directory.is_dir() and not directory.name.startswith(".") and meta_path.is_file():
            try:
                out.append((directory, json.loads(meta_path.read_text())))
            except (OSError, ValueError):
                continue
    return out


def _evict(root: Path, keep: Path, source: str, data_fingerprint: str) -> None:
    """Remove entries of `source` built from other data (its files changed) and all but the newest MAX_ENTRIES."""
    entries = _entries(root)
    stale = [d for d, m in entries if m.get("source") == source and m.get("data_fingerprint") != data_fingerprint]
    others = sorted((d for d, _ in entries if d != keep and d not in stale), key=_last_used, reverse=True)
    for directory in stale + others[MAX_ENTRIES - 1 :]:
        with _locked(root / f"{directory.name}.lock"):
            shutil.rmtree(directory, ignore_errors=True)
        (root / f"{directory.name}.lock").unlink(missing_ok=True)
    for leftover in root.glob(".tmp-*"):  # a tokenization killed half-way
        if time.time() - leftover.stat().st_mtime > 24 * 3600:
            shutil.rmtree(leftover, ignore_errors=True)


def _last_used(directory: Path) -> float:
    try:
        return (directory / META_FILE).stat().st_mtime
    except OSError:
        return 0.0


def cached_tokenize(
    ds, src_tok, tgt_tok, source: str, root: Path | None = None, log=None
) -> tuple[TokenizedCorpus, bool]:
    """The tokenized split from the cache, tokenizing it first on a miss; returns (corpus, hit).

    `src_tok`/`tgt_tok` are `nmt.tokenizer.Tokenizer`s; `source` names where the split came from (its data
    directory or hub id, split and languages), so that an entry whose files have changed is recognized as stale.
    """
    root = root or cache_root()
    data_fingerprint = ds._fingerprint
    key = cache_key(data_fingerprint, src_tok.model_bytes, tgt_tok.model_bytes)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NMTError(f"cannot create the tokenization cache {root}: {e.strerror} (set NMT_CACHE_DIR)") from None
    entry = root / key
    with _locked(root / f"{key}.lock"):
        if (entry / META_FILE).is_file():
            try:
                corpus = open_entry(entry)
                os.utime(entry / META_FILE)  # most recently used
                return corpus, True
            except ValueError as e:  # rebuilt below
                if log:
                    log(str(e))
        if log:
            log(f"tokenizing {source} ({len(ds):,} pairs) into the cache {entry}")
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
        try:
            if entry.exists():  # not a complete entry (no meta.json): rebuild it
                shutil.rmtree(entry)
            tokenize(ds, src_tok, tgt_tok, tmp, max(src_tok.vocab_size, tgt_tok.vocab_size))
            meta = json.loads((tmp / META_FILE).read_text())
            meta.update(source=source, data_fingerprint=data_fingerprint)
            atomic_write_json(tmp / META_FILE, meta)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _evict(root, entry, source, data_fingerprint)
    return open_entry(entry), False


def sentences(ds, columns: tuple[str, ...]) -> Iterator[str]:
    for batch in ds.iter(batch_size=1000):
        for column in columns:
            yield from batch[column]


def cached_sentencepiece(ds, columns: tuple[str, ...], path: Path, config: TokenizerConfig) -> Tokenizer:
    """The SentencePiece model trained on `columns` of `ds` with `config`, written to `path`: copied from the cache
    when this data and these settings were seen before, else trained and cached."""
    root = cache_root("sentencepiece")
    settings = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    key = hashlib.sha256(f"v{FORMAT}\0{ds._fingerprint}\0{','.join(columns)}\0{settings}".encode()).hexdigest()[:32]
    cached = root / f"{key}.model"
    if cached.is_file():
        atomic_write_bytes(path, cached.read_bytes())
        os.utime(cached)
        return Tokenizer.load(path)
    tokenizer = train_sentencepiece(sentences(ds, columns), path, config)
    with contextlib.suppress(OSError, NMTError):  # a cache that cannot be written only costs time
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, path.read_bytes())
        for old in sorted(root.glob("*.model"), key=lambda p: p.stat().st_mtime, reverse=True)[MAX_TOKENIZERS:]:
            old.unlink(missing_ok=True)
    return tokenizer
