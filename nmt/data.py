"""Parallel data through `datasets`: local text/TSV/JSONL files or a hub id, tokenized into Arrow, batched by tokens."""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nmt.config import DataConfig
from nmt.errors import NMTError
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID

HUB_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "test_2016_flickr": "test"}


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def data_source(config: DataConfig) -> tuple[str, str]:
    """('local', directory) from data.path or NMT_DATA_DIR, else ('hub', hub id)."""
    local = config.path or os.environ.get("NMT_DATA_DIR")
    if local:
        directory = Path(local).expanduser()
        if not directory.is_dir():
            origin = "data.path" if config.path else "NMT_DATA_DIR"
            raise NMTError(f"{origin} is not a directory: {directory}")
        return "local", str(directory)
    return "hub", config.hub_id


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or os.environ.get("HF_DATASETS_OFFLINE", "0") not in (
        "0",
        "",
    ):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_text(path: Path):
    if path.stat().st_size == 0:
        raise NMTError(f"no examples in {path} (empty file)")
    datasets = _quiet_datasets()
    try:
        return datasets.load_dataset("text", data_files={"x": str(path)}, split="x")
    except Exception as e:  # noqa: BLE001
        cause = e.__cause__ or e
        raise NMTError(f"cannot read {path}: {cause.__class__.__name__}: {str(cause)[:200]}") from None


def _load_local(directory: Path, split: str, src: str, tgt: str):
    datasets = _quiet_datasets()
    src_path, tgt_path = directory / f"{split}.{src}", directory / f"{split}.{tgt}"
    tsv, jsonl = directory / f"{split}.tsv", directory / f"{split}.jsonl"
    if src_path.is_file() or tgt_path.is_file():
        for p in (src_path, tgt_path):
            if not p.is_file():
                raise NMTError(f"missing data file: {p}")
        s, t = _load_text(src_path), _load_text(tgt_path)
        if len(s) != len(t):
            raise NMTError(f"line-count mismatch: {src_path} has {len(s)} lines, {tgt_path} has {len(t)}")
        return datasets.concatenate_datasets(
            [s.rename_column("text", "src"), t.rename_column("text", "tgt")], axis=1
        ), str(src_path)
    if tsv.is_file():
        ds = _load_text(tsv)

        def split_tsv(batch):
            fields = [line.split("\t") for line in batch["text"]]
            for i, f in enumerate(fields):
                if len(f) != 2:
                    raise ValueError(f"line {i + 1} has {len(f)} tab-separated fields, expected 2")
            return {"src": [f[0] for f in fields], "tgt": [f[1] for f in fields]}

        try:
            return ds.map(split_tsv, batched=True, batch_size=None, remove_columns=["text"]), str(tsv)
        except ValueError as e:
            raise NMTError(f"{tsv}: {e}") from None
    if jsonl.is_file():
        try:
            ds = datasets.load_dataset("json", data_files={"x": str(jsonl)}, split="x")
        except Exception as e:  # noqa: BLE001
            raise NMTError(f"{jsonl}: not valid JSON lines ({e.__class__.__name__})") from None
        missing = [k for k in (src, tgt) if k not in ds.column_names]
        if missing:
            raise NMTError(f"{jsonl}: records lack the key(s) {', '.join(missing)}")
        ds = ds.select_columns([src, tgt]).rename_columns({src: "src", tgt: "tgt"})
        return ds, str(jsonl)
    raise NMTError(f"missing data file: {src_path} (also looked for {tsv.name} and {jsonl.name} in {directory})")


def _load_hub(hub_id: str, split: str, src: str, tgt: str):
    if not _hub_reachable():
        raise NMTError(
            f"cannot reach the dataset hub to load '{hub_id}' (offline?); set NMT_DATA_DIR=DIR or data.path "
            f"to a local directory of {{split}}.{{lang}} files, e.g. NMT_DATA_DIR=../shared/data/multi30k"
        )
    datasets = _quiet_datasets()
    try:
        ds = datasets.load_dataset(hub_id, split=HUB_SPLIT_ALIASES.get(split, split))
    except Exception as e:  # noqa: BLE001
        raise NMTError(f"cannot load '{hub_id}' split '{split}' from the hub: {str(e).splitlines()[0]}") from None
    return ds.select_columns([src, tgt]).rename_columns({src: "src", tgt: "tgt"}), f"{hub_id}:{split}"


def load_split(config: DataConfig, split: str):
    """A `datasets.Dataset` with string columns `src` and `tgt` for one split."""
    kind, where = data_source(config)
    if kind == "local":
        ds, origin = _load_local(Path(where), split, config.src_lang, config.tgt_lang)
    else:
        ds, origin = _load_hub(where, split, config.src_lang, config.tgt_lang)
    if len(ds) == 0:
        raise NMTError(f"no examples in {origin}")
    return ds


@dataclass
class TokenizedCorpus:
    """Token ids of a parallel corpus as flat arrays plus offsets (memory-mapped from the cache; no Python lists)."""

    src_ids: np.ndarray
    src_offsets: np.ndarray
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray
    src_lengths: np.ndarray = field(init=False)  # computed once: batching and every step read them
    tgt_lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.src_lengths = np.diff(self.src_offsets)
        self.tgt_lengths = np.diff(self.tgt_offsets)

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    def src(self, i: int) -> np.ndarray:
        return self.src_ids[self.src_offsets[i] : self.src_offsets[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_ids[self.tgt_offsets[i] : self.tgt_offsets[i + 1]]


def _cut(cost: np.ndarray, batch_tokens: int) -> list[int]:
    """Where to cut a pool (in length order) so that each batch's rows x longest cost stays within `batch_tokens`
    (a batch holds at least one example): the greedy cut, vectorized per batch instead of per example."""
    cuts, begin, n = [0], 0, len(cost)
    while begin < n:
        widest = batch_tokens // max(int(cost[begin]), 1) + 1  # the batch's longest is at least its first
        window = np.maximum.accumulate(cost[begin : begin + widest])
        over = np.flatnonzero(window * np.arange(1, len(window) + 1) > batch_tokens)
        over = over[over > 0]
        begin += int(over[0]) if len(over) else len(window)
        cuts.append(begin)
    return cuts


def make_batches(
    src_lengths: np.ndarray,
    tgt_lengths: np.ndarray,
    indices: np.ndarray,
    batch_tokens: int,
    shuffle: bool,
    seed: int = 0,
    pool_batches: int = 50,
) -> list[np.ndarray]:
    """Length-bucketed batches of about `batch_tokens` padded target tokens (EOS included).

    Shuffled runs shuffle examples, sort each pool of ~`pool_batches` batches by length, cut, then shuffle the
    batch order; the result depends only on the arguments, so a resumed run rebuilds the same epoch.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(indices) if shuffle else np.asarray(indices)
    cost = np.maximum(tgt_lengths, src_lengths) + 1
    avg = max(float(cost[order].mean()) if len(order) else 1.0, 1.0)
    pool_size = max(1, int(pool_batches * batch_tokens / avg)) if shuffle else max(len(order), 1)
    batches: list[np.ndarray] = []
    for start in range(0, len(order), pool_size):
        pool = order[start : start + pool_size]
        pool = pool[np.lexsort((src_lengths[pool], tgt_lengths[pool]))]
        cuts = _cut(cost[pool], batch_tokens)
        batches += [pool[a:b] for a, b in itertools.pairwise(cuts)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


@dataclass
class Batch:
    src: torch.Tensor  # (batch, src_len) ids, EOS-terminated, PAD-padded
    src_lengths: torch.Tensor  # (batch,)
    tgt_in: torch.Tensor  # (batch, tgt_len) BOS + target
    tgt_out: torch.Tensor  # (batch, tgt_len) target + EOS
    n_tokens: int  # target tokens, EOS included

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src.to(device, non_blocking=True),
            self.src_lengths.to(device),
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.n_tokens,
        )


def pad_sources(sequences: list[np.ndarray | list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """EOS-terminate and pad source id sequences: (batch, max_len) ids and (batch,) lengths."""
    lengths = torch.tensor([len(s) + 1 for s in sequences], dtype=torch.long)
    src = torch.full((len(sequences), int(lengths.max())), PAD_ID, dtype=torch.long)
    for i, s in enumerate(sequences):
        src[i, : len(s)] = torch.from_numpy(np.array(s, dtype=np.int64))
        src[i, len(s)] = EOS_ID
    return src, lengths


def collate(corpus: TokenizedCorpus, indices: np.ndarray) -> Batch:
    src, src_lengths = pad_sources([corpus.src(i) for i in indices])
    targets = [corpus.tgt(i) for i in indices]
    t_len = max(len(t) for t in targets) + 1
    tgt_in = torch.full((len(targets), t_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((len(targets), t_len), PAD_ID, dtype=torch.long)
    for i, t in enumerate(targets):
        ids = torch.from_numpy(np.array(t, dtype=np.int64))
        tgt_in[i, 0] = BOS_ID
        tgt_in[i, 1 : len(t) + 1] = ids
        tgt_out[i, : len(t)] = ids
        tgt_out[i, len(t)] = EOS_ID
    return Batch(src, src_lengths, tgt_in, tgt_out, int(sum(len(t) + 1 for t in targets)))


def read_lines(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="\n") as f:
            return [line.rstrip("\n").rstrip("\r") for line in f]
    except FileNotFoundError:
        raise NMTError(f"missing file: {path}") from None
    except UnicodeDecodeError:
        raise NMTError(f"{path} is not valid UTF-8 text") from None
    except OSError as e:
        raise NMTError(f"cannot read {path}: {e.strerror}") from None
