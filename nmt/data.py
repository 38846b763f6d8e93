"""Parallel data through `datasets`, tokenized into flat arrays, batched by tokens.

Sources: a local directory (`data.path` or NMT_DATA_DIR) of `{split}.{lang}` text files, `{split}.tsv`,
`{split}.jsonl`, `{split}.parquet` or `{split}.arrow` files, splits saved by `save_to_disk` (DIR/SPLIT), or a dataset
repository in the hub's layout; else a hub id (`data.hub_id`, `data.hub_config`). Pairs come from the hub's
`translation` column of {lang: text} records, columns named by language, or columns `src` and `tgt`.
"""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nmt.config import CorpusConfig, DataConfig
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


def source_name(config: DataConfig) -> str:
    """Where the data comes from, for logs and the cache: 'local:DIR' or 'hub:ID[/CONFIG]'."""
    kind, where = data_source(config)
    return f"{kind}:{where}" + (f"/{config.hub_config}" if config.hub_config else "")


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


def _text_column(ds, column: str, origin: str) -> None:
    dtype = getattr(ds.features[column], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise NMTError(f"{origin}: the column '{column}' holds {ds.features[column]}, not text")


def pair_columns(ds, src: str, tgt: str, origin: str):
    """The dataset's pairs as the string columns `src` and `tgt`, from the hub's `translation` column of
    {lang: text} records, else from columns named by language (`de`, `en`), else from columns `src` and `tgt`."""
    if src == tgt:
        raise NMTError(f"{origin}: data.src_lang and data.tgt_lang are both '{src}'")
    columns = ds.column_names
    if "translation" in columns:
        flat = ds.select_columns(["translation"]).flatten()
        languages = sorted(c.split(".", 1)[1] for c in flat.column_names if c.startswith("translation."))
        missing = [lang for lang in (src, tgt) if lang not in languages]
        if missing:
            found = ", ".join(languages) if languages else "none (not {lang: text} records)"
            raise NMTError(
                f"{origin}: the translation column has no '{missing[0]}' (languages: {found}); "
                "set data.src_lang and data.tgt_lang to two of them"
            )
        names = [f"translation.{src}", f"translation.{tgt}"]
    elif src in columns and tgt in columns:
        names = [src, tgt]
    elif "src" in columns and "tgt" in columns:
        names = ["src", "tgt"]
    else:
        raise NMTError(
            f"{origin}: no 'translation' column and no columns '{src}' and '{tgt}' (or 'src' and 'tgt'); "
            f"columns: {', '.join(columns)}"
        )
    ds = flat if names[0].startswith("translation.") else ds
    for name in names:
        _text_column(ds, name, origin)
    ds = ds.select_columns(names)
    return ds if names == ["src", "tgt"] else ds.rename_columns(dict(zip(names, ["src", "tgt"], strict=True)))


def _split_names(split: str) -> list[str]:
    """The split's name, then its usual name on the hub (val: validation)."""
    alias = HUB_SPLIT_ALIASES.get(split)
    return [split, alias] if alias else [split]


def _one_line(error: Exception) -> str:
    """The error's message on one line, shortened."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text[:400] if text else error.__class__.__name__


def _load_repo(path: str, config: str | None, split: str, origin: str):
    """`datasets.load_dataset(path, name=config, split=...)`: a hub id or a local directory in the hub's layout
    (parquet/arrow/json shards, README.md with `configs:`), trying the split's hub alias when the name is unknown."""
    datasets = _quiet_datasets()
    errors = []
    for name in _split_names(split):
        try:
            return datasets.load_dataset(path, name=config, split=name)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            if "split" not in str(e).lower():  # only an unknown split is worth the alias
                break
    message = _one_line(errors[0])
    hint = " (set data.hub_config)" if config is None and "config" in message.lower() else ""
    named = f" configuration '{config}'" if config else ""
    raise NMTError(f"cannot load {origin}{named} split '{split}': {message}{hint}")


def _is_dataset_repo(directory: Path) -> bool:
    """A directory in the hub's layout: README.md with YAML metadata, or parquet/arrow shards (up to 2 levels)."""
    readme = directory / "README.md"
    if readme.is_file() and readme.read_text(encoding="utf-8", errors="replace").startswith("---"):
        return True
    return any(any(directory.glob(f"{deep}*.{ext}")) for deep in ("", "*/", "*/*/") for ext in ("parquet", "arrow"))


def _load_saved(directory: Path, split: str):
    """A split saved by `Dataset.save_to_disk` (DIR/SPLIT, as `DatasetDict.save_to_disk` writes), or None."""
    datasets = _quiet_datasets()
    for name in _split_names(split):
        if (directory / name / "state.json").is_file():
            try:
                return datasets.load_from_disk(str(directory / name)), str(directory / name)
            except Exception as e:  # noqa: BLE001
                raise NMTError(f"cannot read the saved dataset {directory / name}: {_one_line(e)}") from None
    if (directory / "state.json").is_file():
        raise NMTError(
            f"{directory} holds one dataset saved without splits: save a DatasetDict (train, validation, ...) "
            f"or each split as DIR/SPLIT (DIR/{split})"
        )
    return None


def _load_file(builder: str, path: Path):
    datasets = _quiet_datasets()
    try:
        return datasets.load_dataset(builder, data_files={"x": str(path)}, split="x")
    except Exception as e:  # noqa: BLE001
        raise NMTError(f"{path}: not a readable {builder} file ({_one_line(e)})") from None


def _load_local(directory: Path, split: str, src: str, tgt: str, config: str | None = None):
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
        return pair_columns(ds, src, tgt, str(jsonl)), str(jsonl)
    for builder in ("parquet", "arrow"):
        single = directory / f"{split}.{builder}"
        if single.is_file():
            return pair_columns(_load_file(builder, single), src, tgt, str(single)), str(single)
    saved = _load_saved(directory, split)
    if saved is not None:
        return pair_columns(saved[0], src, tgt, saved[1]), saved[1]
    if config is not None or _is_dataset_repo(directory):
        origin = str(directory)
        return pair_columns(_load_repo(origin, config, split, origin), src, tgt, origin), f"{origin}:{split}"
    raise NMTError(
        f"missing data file: {src_path} (also looked for {tsv.name}, {jsonl.name}, {split}.parquet, {split}.arrow, "
        f"a saved dataset {split}/ and a dataset repository in {directory})"
    )


def _load_hub(hub_id: str, split: str, src: str, tgt: str, config: str | None = None):
    if not _hub_reachable():
        raise NMTError(
            f"cannot reach the dataset hub to load '{hub_id}' (offline?); set NMT_DATA_DIR=DIR or data.path "
            f"to a local directory of {{split}}.{{lang}} files, e.g. NMT_DATA_DIR=../shared/data/multi30k"
        )
    origin = f"'{hub_id}' from the hub"
    return pair_columns(_load_repo(hub_id, config, split, origin), src, tgt, hub_id), f"{hub_id}:{split}"


def load_split(config: DataConfig, split: str):
    """A `datasets.Dataset` with string columns `src` and `tgt` for one split."""
    kind, where = data_source(config)
    if kind == "local":
        ds, origin = _load_local(Path(where), split, config.src_lang, config.tgt_lang, config.hub_config)
    else:
        ds, origin = _load_hub(where, split, config.src_lang, config.tgt_lang, config.hub_config)
    if len(ds) == 0:
        raise NMTError(f"no examples in {origin}")
    return ds


def corpus_name(corpus: CorpusConfig, data: DataConfig) -> str:
    """A corpus of `data.corpora` for logs and the cache: 'local:DIR:SPLIT' or 'hub:ID[/CONFIG]:SPLIT'."""
    where = f"local:{Path(corpus.path).expanduser()}" if corpus.path else f"hub:{corpus.hub_id}"
    return where + (f"/{corpus.hub_config}" if corpus.hub_config else "") + f":{corpus.split or data.train_split}"


def load_corpus(corpus: CorpusConfig, data: DataConfig):
    """One corpus of `data.corpora` (its split, else data.train_split) as a dataset of `src` and `tgt`, read as
    `load_split` reads data.path or data.hub_id, and cut to its `max_examples`."""
    split = corpus.split or data.train_split
    if corpus.path:
        directory = Path(corpus.path).expanduser()
        if not directory.is_dir():
            raise NMTError(f"data.corpora: path is not a directory: {directory}")
        ds, origin = _load_local(directory, split, data.src_lang, data.tgt_lang, corpus.hub_config)
    else:
        ds, origin = _load_hub(str(corpus.hub_id), split, data.src_lang, data.tgt_lang, corpus.hub_config)
    if len(ds) == 0:
        raise NMTError(f"no examples in {origin}")
    if corpus.max_examples and corpus.max_examples < len(ds):
        ds = ds.select(range(corpus.max_examples))
    return ds


@dataclass
class Mixture:
    """Training corpora drawn from by weight. `groups[i]` holds corpus i's usable example indices (into the
    concatenated corpus); an epoch holds as many examples as all groups together, corpus i's share of them in
    proportion to `weights[i]`."""

    groups: list[np.ndarray]
    weights: list[float]

    def counts(self) -> list[int]:
        """Examples per epoch from each corpus: the proportional shares, rounded by largest remainder."""
        total = sum(len(g) for g in self.groups)
        shares = np.asarray(self.weights, dtype=np.float64) / sum(self.weights) * total
        counts = np.floor(shares).astype(np.int64)
        order = np.argsort(-(shares - counts), kind="stable")  # ties: the earlier corpus
        counts[order[: total - int(counts.sum())]] += 1
        return counts.tolist()

    def epoch(self, seed: int, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s examples (unordered: batching shuffles them). Corpus i is read through an endless
        sequence of permutations of its group, each seeded by (seed, i, its number): epoch e takes the next
        `counts()[i]` of them after epoch e-1's, so a smaller share still reaches every example over the epochs and
        a larger one repeats examples. Depends only on the arguments: a resumed run draws the same epoch."""
        parts = []
        for i, (group, n) in enumerate(zip(self.groups, self.counts(), strict=True)):
            if n == 0:
                continue
            m, start = len(group), epoch * n
            first, last = start // m, (start + n - 1) // m
            stream = np.concatenate(
                [group[np.random.default_rng([seed, i, cycle]).permutation(m)] for cycle in range(first, last + 1)]
            )
            parts.append(stream[start - first * m : start - first * m + n])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class TokenizedCorpus:
    """Token ids of a parallel corpus as flat arrays plus offsets (memory-mapped from the cache; no Python lists)."""

    src_ids: np.ndarray
    src_offsets: np.ndarray
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray
    src_lengths: np.ndarray = field(init=False)  # computed once: batching and every step read them
    tgt_lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:  # int32: half the memory of int64 at tens of millions of pairs
        self.src_lengths = np.diff(self.src_offsets).astype(np.int32)
        self.tgt_lengths = np.diff(self.tgt_offsets).astype(np.int32)

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
