"""The tokenization cache: one entry per split and tokenizer, found again by later runs and other processes, stale
entries removed."""

import os

import numpy as np
import pytest

from nmt.config import DataConfig
from nmt.data import load_split
from nmt.errors import NMTError
from nmt.token_cache import MAX_ENTRIES, cached_tokenize
from tests.conftest import run_nmt
from tests.synthetic import write_reversal_task


class CharTokenizer:
    def __init__(self, salt: int = 0):
        self.salt = salt
        self.calls = 0

    vocab_size = 40

    @property
    def model_bytes(self) -> bytes:
        return f"chars-{self.salt}".encode()

    def encode(self, texts):
        self.calls += 1
        return [[4 + (ord(c) + self.salt) % 30 for c in t] for t in texts]


def write_split(directory, src, tgt):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.de").write_text("".join(s + "\n" for s in src))
    (directory / "train.en").write_text("".join(t + "\n" for t in tgt))
    return load_split(DataConfig(path=str(directory)), "train")


def entries(root):
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_hit_after_miss_gives_the_same_ids_without_encoding(tmp_path):
    ds = write_split(tmp_path / "d", ["abc", "de", ""], ["xy", "z", "uvw"])
    tok = CharTokenizer()
    first, hit = cached_tokenize(ds, tok, tok, "d:train", root=tmp_path / "cache")
    assert not hit and tok.calls > 0
    tok.calls = 0
    again, hit = cached_tokenize(ds, tok, tok, "d:train", root=tmp_path / "cache")
    assert hit and tok.calls == 0
    assert isinstance(again.src_ids, np.memmap)
    assert again.src_lengths.tolist() == [3, 2, 0] and again.tgt_lengths.tolist() == [2, 1, 3]
    assert again.tgt(2).tolist() == first.tgt(2).tolist() == tok.encode(["uvw"])[0]
    assert len(entries(tmp_path / "cache")) == 1 and not list((tmp_path / "cache").glob(".tmp-*"))


def test_another_tokenizer_is_another_entry(tmp_path):
    ds = write_split(tmp_path / "d", ["abc"], ["xy"])
    cached_tokenize(ds, CharTokenizer(0), CharTokenizer(0), "d:train", root=tmp_path / "cache")
    other, hit = cached_tokenize(ds, CharTokenizer(1), CharTokenizer(1), "d:train", root=tmp_path / "cache")
    assert not hit and other.src(0).tolist() == CharTokenizer(1).encode(["abc"])[0]
    assert len(entries(tmp_path / "cache")) == 2


def test_changed_data_replaces_its_stale_entry_and_the_cache_stays_bounded(tmp_path):
    root = tmp_path / "cache"
    ds = write_split(tmp_path / "d", ["abc"], ["xy"])
    cached_tokenize(ds, CharTokenizer(), CharTokenizer(), "d:train", root=root)
    before = entries(root)
    ds = write_split(tmp_path / "d", ["abcd", "e"], ["xy", "z"])  # the same files, new contents
    corpus, hit = cached_tokenize(ds, CharTokenizer(), CharTokenizer(), "d:train", root=root)
    assert not hit and len(corpus) == 2
    assert len(entries(root)) == 1 and entries(root) != before  # the stale entry is gone
    for salt in range(MAX_ENTRIES + 3):
        cached_tokenize(ds, CharTokenizer(salt + 10), CharTokenizer(salt + 10), "d:train", root=root)
    assert len(entries(root)) == MAX_ENTRIES
    assert not [p for p in root.glob("*.lock") if not (root / p.stem).is_dir()]


def test_a_damaged_entry_is_rebuilt_and_an_unusable_cache_is_a_clear_error(tmp_path):
    ds = write_split(tmp_path / "d", ["abc", "de"], ["xy", "z"])
    cached_tokenize(ds, CharTokenizer(), CharTokenizer(), "d:train", root=tmp_path / "cache")
    [entry] = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    with open(entry / "tgt_ids.bin", "r+b") as f:  # truncated, as by a full disk
        f.truncate(1)
    messages = []
    again, hit = cached_tokenize(ds, CharTokenizer(), CharTokenizer(), "d:train", tmp_path / "cache", messages.append)
    assert not hit and "damaged tokenization cache entry" in messages[0]
    assert again.tgt(1).tolist() == CharTokenizer().encode(["z"])[0]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NMTError, match="cannot create the tokenization cache .*NMT_CACHE_DIR"):
        cached_tokenize(ds, CharTokenizer(), CharTokenizer(), "d:train", root=tmp_path / "file" / "cache")


def cache_files(*roots):
    return sorted(str(p) for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_second_run_reuses_the_tokenized_corpus(tmp_path):
    """Two `nmt train` runs on the same data: the second tokenizes nothing and leaves no new cache file."""
    data = write_reversal_task(tmp_path / "data", train=300)
    caches = {"NMT_CACHE_DIR": str(tmp_path / "nmt-cache"), "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    args = ["--config", data / "reversal.yaml", "--set", f"data.path={data}", "--set", "train.max_steps=2", "--quiet"]
    run_nmt("train", *args, "--output-dir", tmp_path / "a", **caches)
    first = cache_files(tmp_path / "nmt-cache", tmp_path / "hf-cache")
    assert "tokenizing" in (tmp_path / "a" / "train.log").read_text()
    run_nmt("train", *args, "--output-dir", tmp_path / "b", **caches)
    assert "tokenizing" not in (tmp_path / "b" / "train.log").read_text()
    second = cache_files(tmp_path / "nmt-cache", tmp_path / "hf-cache")
    assert [f for f in second if f not in first and not f.endswith(".lock")] == []
    assert len(entries(tmp_path / "nmt-cache" / "tokenized")) == 2  # train and validation splits
    assert os.path.getsize(tmp_path / "a" / "spm.model") > 0
