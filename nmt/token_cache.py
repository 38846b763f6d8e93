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
import io
import itertools
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
SHARD_PAIRS = 100_000  # pairs per shard: the unit of work of a tokenizing process
PROGRESS_SECONDS = 30.0  # between progress lines
META_FILE = "meta.json"
SENTENCEPIECE_FORMAT = 2  # 2: a corpus larger than the sample is sampled over its whole length


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


def default_workers() -> int:
    """Tokenizing processes: the cores this process may use, shared with torchrun's other workers on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


@dataclass
class _Shards:
    """One split's tokenization cut into shards of `size` pairs, each written into `directory` by whichever process
    (pool worker or torchrun rank) holds its lock first: ids to temporary names, renamed, then a `.done` marker."""

    ds: Any
    src_tok: Encoder
    tgt_tok: Encoder
    dtype: np.dtype
    directory: Path
    size: int
    entry: Path  # the finished entry: once it exists, no shard is worth doing

    @property
    def count(self) -> int:
        return -(-len(self.ds) // self.size)

    def path(self, index: int, kind: str) -> Path:
        return self.directory / f"{index:06d}.{kind}"

    def done(self, index: int) -> bool:
        return self.path(index, "done").is_file()

    def pairs(self, index: int) -> int:
        return min(len(self.ds), (index + 1) * self.size) - index * self.size

    def encode(self, index: int, wait: bool = False) -> bool:
        """Write shard `index` unless it is done; False when another process holds it (and `wait` is not set)."""
        if (self.entry / META_FILE).is_file():
            return True
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = open(self.path(index, "lock"), "a+b")  # noqa: SIM115
        except FileNotFoundError:  # the shards were put together and removed meanwhile
            if (self.entry / META_FILE).is_file():
                return True
            raise
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if self.done(index) or (self.entry / META_FILE).is_file():
                return True
            lo, hi = index * self.size, index * self.size + self.pairs(index)
            lengths = []
            for side, tok in (("src", self.src_tok), ("tgt", self.tgt_tok)):
                column = self.ds.select_columns([side])
                part = self.path(index, f"{side}.part{os.getpid()}")
                n_side: list[np.ndarray] = []
                with open(part, "wb") as f:
                    for start in range(lo, hi, ENCODE_BATCH):
                        ids = tok.encode(column[start : min(hi, start + ENCODE_BATCH)][side])
                        n = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
                        f.write(np.fromiter(itertools.chain.from_iterable(ids), self.dtype, int(n.sum())).tobytes())
                        n_side.append(n)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(part, self.path(index, f"{side}.bin"))
                lengths.append(np.concatenate(n_side) if n_side else np.zeros(0, dtype=np.int64))
            atomic_write_bytes(self.path(index, "lengths.npy"), _npy(np.stack(lengths)))
            atomic_write_bytes(self.path(index, "done"), b"")
            return True

    def lengths(self, index: int) -> np.ndarray:
        return np.load(self.path(index, "lengths.npy"))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


_POOL_SHARDS: _Shards | None = None  # what the forked pool workers encode


def _pool_encode(index: int) -> tuple[int, bool]:
    assert _POOL_SHARDS is not None
    return index, _POOL_SHARDS.encode(index)


class _Progress:
    """Log lines while a long tokenization runs: pairs done, pairs per second, the estimated time left."""

    def __init__(self, total: int, log: Callable[[str], None] | None, every: float = PROGRESS_SECONDS):
        self.total, self.log, self.every = total, log, every
        self.done, self.start = 0, time.monotonic()
        self.last = self.start

    def add(self, pairs: int) -> None:
        self.done += pairs
        now = time.monotonic()
        if self.log and now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            self.log(
                f"tokenized {self.done:,} of {self.total:,} pairs ({self.done / self.total:.0%}), "
                f"{rate:,.0f} pairs/s, about {(self.total - self.done) / rate:,.0f} s left"
            )


def encode_shards(shards: _Shards, workers: int, log: Callable[[str], None] | None = None) -> int:
    """Encode every shard not yet done, `workers` processes at a time (forked: they share the memory-mapped split
    and the tokenizers); then wait for the shards other processes hold, and redo those whose holder died.
    Returns how many shards this process encoded."""
    global _POOL_SHARDS
    shards.directory.mkdir(parents=True, exist_ok=True)
    pending = [i for i in range(shards.count) if not shards.done(i)]
    progress = _Progress(sum(map(shards.pairs, pending)), log)
    encoded = 0
    if workers > 1 and len(pending) > 1:
        _POOL_SHARDS = shards
        try:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(min(workers, len(pending)), mp_context=context) as pool:
                for index, ours in pool.map(_pool_encode, pending):
                    encoded += ours
                    progress.add(shards.pairs(index))
        finally:
            _POOL_SHARDS = None
    else:
        for index in pending:
            encoded += shards.encode(index)
            progress.add(shards.pairs(index))
    for index in pending:  # held by another process (a torchrun rank): wait for it, redo it if that process died
        while not shards.done(index) and not (shards.entry / META_FILE).is_file():
            encoded += shards.encode(index, wait=True)
    return encoded


def _assemble(shards: _Shards, directory: Path) -> None:
    """The shards' ids and lengths as one entry in `directory` (the same files as one process writes)."""
    for row, side in enumerate(("src", "tgt")):  # one side's lengths at a time
        with open(directory / f"{side}_ids.bin", "wb") as out:
            for index in range(shards.count):
                with open(shards.path(index, f"{side}.bin"), "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
            out.flush()
            os.fsync(out.fileno())
        side_lengths = np.concatenate([np.zeros(0, np.int64)] + [shards.lengths(i)[row] for i in range(shards.count)])
        np.save(directory / f"{side}_offsets.npy", np.concatenate([[0], np.cumsum(side_lengths)]).astype(np.int64))
    atomic_write_json(directory / META_FILE, {"format": FORMAT, "dtype": shards.dtype.name, "pairs": len(shards.ds)})


def tokenize(
    ds,
    src_tok: Encoder,
    tgt_tok: Encoder,
    directory: Path,
    vocab_size: int = 65536,
    workers: int = 1,
    shard_pairs: int = SHARD_PAIRS,
    log: Callable[[str], None] | None = None,
) -> TokenizedCorpus:
    """Encode both sides of `ds` into `directory` (ids and offsets as flat files) and open them memory-mapped:
    `shard_pairs` pairs at a time, on `workers` processes; the result does not depend on either."""
    shards = _Shards(ds, src_tok, tgt_tok, _id_dtype(vocab_size), directory / ".shards", shard_pairs, directory)
    encode_shards(shards, workers, log)
    _assemble(shards, directory)
    shutil.rmtree(shards.directory)
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
    for leftover in itertools.chain(root.glob(".tmp-*"), root.glob(".shards-*")):  # a tokenization killed half-way
        if time.time() - leftover.stat().st_mtime > 24 * 3600:
            shutil.rmtree(leftover, ignore_errors=True)


def _last_used(directory: Path) -> float:
    try:
        return (directory / META_FILE).stat().st_mtime
    except OSError:
        return 0.0


def cached_tokenize(
    ds,
    src_tok,
    tgt_tok,
    source: str,
    root: Path | None = None,
    log=None,
    workers: int | None = None,
    shard_pairs: int = SHARD_PAIRS,
) -> tuple[TokenizedCorpus, bool]:
    """The tokenized split from the cache, tokenizing it first on a miss; returns (corpus, hit).

    `src_tok`/`tgt_tok` are `nmt.tokenizer.Tokenizer`s; `source` names where the split came from (its data
    directory or hub id, split and languages), so that an entry whose files have changed is recognized as stale.
    On a miss the split is encoded in shards of `shard_pairs` pairs by `workers` processes (default: one per core)
    and by every other process that asks for the same entry meanwhile (torchrun's ranks); the process that then
    takes the entry's lock first puts the shards together into the entry.
    """
    root = root or cache_root()
    data_fingerprint = ds._fingerprint
    key = cache_key(data_fingerprint, src_tok.model_bytes, tgt_tok.model_bytes)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NMTError(f"cannot create the tokenization cache {root}: {e.strerror} (set NMT_CACHE_DIR)") from None
    entry, lock = root / key, root / f"{key}.lock"

    def opened() -> TokenizedCorpus | None:
        if (entry / META_FILE).is_file():
            try:
                corpus = open_entry(entry)
                os.utime(entry / META_FILE)  # most recently used
                return corpus
            except ValueError as e:  # rebuilt below
                if log:
                    log(str(e))
                shutil.rmtree(entry, ignore_errors=True)
        return None

    with _locked(lock):
        corpus = opened()
    if corpus is not None:
        return corpus, True
    workers = workers or default_workers()
    shards = _Shards(
        ds, src_tok, tgt_tok, _id_dtype(max(src_tok.vocab_size, tgt_tok.vocab_size)),
        root / f".shards-{key}-{shard_pairs}", shard_pairs, entry,
    )  # fmt: skip
    if log:
        log(
            f"tokenizing {source} ({len(ds):,} pairs, {shards.count:,} shards, {min(workers, shards.count)} processes) "
            f"into the cache {entry}"
        )
    start = time.monotonic()
    encode_shards(shards, workers, log)
    with _locked(lock):
        corpus = opened()  # put together by another process meanwhile
        if corpus is None:
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
            try:
                if entry.exists():  # not a complete entry (no meta.json): rebuild it
                    shutil.rmtree(entry)
                encode_shards(shards, 1)  # any shard lost meanwhile (none, unless its files were removed)
                _assemble(shards, tmp)
                meta = json.loads((tmp / META_FILE).read_text())
                meta.update(source=source, data_fingerprint=data_fingerprint)
                atomic_write_json(tmp / META_FILE, meta)
                os.replace(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            shutil.rmtree(shards.directory, ignore_errors=True)
            if log:
                seconds = time.monotonic() - start
                log(f"tokenized {len(ds):,} pairs in {seconds:.1f} s ({len(ds) / max(seconds, 1e-9):,.0f} pairs/s)")
    _evict(root, entry, source, data_fingerprint)
    return open_entry(entry), False


def sentences(ds, columns: tuple[str, ...], limit: int | None = None) -> Iterator[str]:
    """The `columns` of every pair, batch by batch; when they hold more than `limit` sentences, those of
    `limit // len(columns)` pairs spread evenly over the split (the same pairs every time: the model stays
    deterministic, and a mixture's last corpus counts as much as its first)."""
    pairs = (limit // len(columns)) if limit else len(ds)
    if len(ds) > pairs:
        ds = ds.select(np.linspace(0, len(ds) - 1, max(pairs, 1)).round().astype(np.int64), keep_in_memory=True)
    for batch in ds.iter(batch_size=1000):
        for column in columns:
            yield from batch[column]


def cached_sentencepiece(ds, columns: tuple[str, ...], path: Path, config: TokenizerConfig) -> Tokenizer:
    """The SentencePiece model trained on `columns` of `ds` with `config`, written to `path`: copied from the cache
    when this data and these settings were seen before, else trained and cached."""
    root = cache_root("sentencepiece")
    settings = json.dumps(config.model_dump(mode="json", exclude={"workers"}), sort_keys=True)
    text = f"v{SENTENCEPIECE_FORMAT}\0{ds._fingerprint}\0{','.join(columns)}\0{settings}"
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    cached = root / f"{key}.model"
    if cached.is_file():
        atomic_write_bytes(path, cached.read_bytes())
        os.utime(cached)
        return Tokenizer.load(path)
    tokenizer = train_sentencepiece(sentences(ds, columns, config.sample_size), path, config)
    with contextlib.suppress(OSError, NMTError):  # a cache that cannot be written only costs time
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, path.read_bytes())
        for old in sorted(root.glob("*.model"), key=lambda p: p.stat().st_mtime, reverse=True)[MAX_TOKENIZERS:]:
            old.unlink(missing_ok=True)
    return tokenizer
