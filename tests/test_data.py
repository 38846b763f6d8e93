import json

import numpy as np
import pytest

from nmt.config import DataConfig
from nmt.data import collate, load_split, make_batches, read_lines
from nmt.errors import NMTError
from nmt.token_cache import tokenize
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID


def write_pair(directory, split, src, tgt):
    (directory / f"{split}.de").write_text("".join(s + "\n" for s in src), encoding="utf-8")
    (directory / f"{split}.en").write_text("".join(t + "\n" for t in tgt), encoding="utf-8")


def test_local_text_files(tmp_path):
    write_pair(tmp_path, "train", ["ein Hund", "", "zwei Katzen"], ["a dog", "", "two cats"])
    ds = load_split(DataConfig(path=str(tmp_path)), "train")
    assert list(ds["src"]) == ["ein Hund", "", "zwei Katzen"] and list(ds["tgt"]) == ["a dog", "", "two cats"]


def test_env_var_points_at_local_data(tmp_path, monkeypatch):
    write_pair(tmp_path, "val", ["x"], ["y"])
    monkeypatch.setenv("NMT_DATA_DIR", str(tmp_path))
    assert len(load_split(DataConfig(), "val")) == 1


def test_line_count_mismatch_is_an_error(tmp_path):
    write_pair(tmp_path, "train", ["a", "b", "c"], ["x", "y"])
    with pytest.raises(NMTError, match=r"line-count mismatch: .*train\.de has 3 lines, .*train\.en has 2"):
        load_split(DataConfig(path=str(tmp_path)), "train")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(NMTError, match=r"missing data file: .*test\.de"):
        load_split(DataConfig(path=str(tmp_path)), "test")
    (tmp_path / "train.de").write_text("a\n")
    with pytest.raises(NMTError, match=r"missing data file: .*train\.en"):
        load_split(DataConfig(path=str(tmp_path)), "train")
    write_pair(tmp_path, "empty", [], [])
    with pytest.raises(NMTError, match="no examples"):
        load_split(DataConfig(path=str(tmp_path)), "empty")
    with pytest.raises(NMTError, match="not a directory"):
        load_split(DataConfig(path=str(tmp_path / "nope")), "train")


def test_tsv_and_jsonl(tmp_path):
    (tmp_path / "train.tsv").write_text("ein Hund\ta dog\nzwei\ttwo\n", encoding="utf-8")
    ds = load_split(DataConfig(path=str(tmp_path)), "train")
    assert list(ds["src"]) == ["ein Hund", "zwei"] and list(ds["tgt"]) == ["a dog", "two"]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps({"de": d, "en": e}) + "\n" for d, e in [("a", "b")]))
    assert list(load_split(DataConfig(path=str(tmp_path)), "val")["tgt"]) == ["b"]
    (tmp_path / "bad.tsv").write_text("only one field\n")
    with pytest.raises(NMTError, match="tab-separated"):
        load_split(DataConfig(path=str(tmp_path)), "bad")


def test_hub_fails_fast_offline_naming_the_local_alternative(monkeypatch):
    monkeypatch.delenv("NMT_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NMTError, match="NMT_DATA_DIR"):
        load_split(DataConfig(), "train")


class CharTokenizer:
    def encode(self, texts):
        return [[4 + (ord(c) % 20) for c in t] for t in texts]


def test_tokenize_and_collate(tmp_path):
    write_pair(tmp_path, "train", ["abc", "de", "f"], ["xy", "z", "uvw"])
    ds = load_split(DataConfig(path=str(tmp_path)), "train")
    (tmp_path / "cache").mkdir()
    corpus = tokenize(ds, CharTokenizer(), CharTokenizer(), tmp_path / "cache")
    assert corpus.src_lengths.tolist() == [3, 2, 1] and corpus.tgt_lengths.tolist() == [2, 1, 3]
    batch = collate(corpus, np.array([0, 2]))
    assert batch.src.shape == (2, 4) and batch.src_lengths.tolist() == [4, 2]
    assert batch.src[1].tolist()[1:] == [EOS_ID, PAD_ID, PAD_ID]
    assert batch.tgt_in[:, 0].tolist() == [BOS_ID, BOS_ID]
    assert batch.tgt_out[0].tolist() == corpus.tgt(0).tolist() + [EOS_ID, PAD_ID]
    assert batch.tgt_in[1, 1:].tolist() == batch.tgt_out[1, :-1].tolist()
    assert batch.n_tokens == 3 + 4


def test_batches_cover_every_example_once_within_budget():
    rng = np.random.default_rng(0)
    src_len, tgt_len = rng.integers(1, 40, 1000), rng.integers(1, 40, 1000)
    indices = np.arange(1000)
    batches = make_batches(src_len, tgt_len, indices, 400, shuffle=True, seed=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    for b in batches:
        assert len(b) * (np.maximum(src_len[b], tgt_len[b]) + 1).max() <= 400 or len(b) == 1
    # deterministic per seed, different across seeds
    again = make_batches(src_len, tgt_len, indices, 400, shuffle=True, seed=3)
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    other = make_batches(src_len, tgt_len, indices, 400, shuffle=True, seed=4)
    assert not all(len(a) == len(b) and (a == b).all() for a, b in zip(batches, other, strict=False))


def test_bucketing_keeps_padding_low():
    rng = np.random.default_rng(1)
    src_len, tgt_len = rng.integers(5, 30, 5000), rng.integers(5, 30, 5000)
    batches = make_batches(src_len, tgt_len, np.arange(5000), 2000, shuffle=True, seed=0)
    real = sum(int(tgt_len[b].sum()) for b in batches)
    padded = sum(len(b) * int(tgt_len[b].max()) for b in batches)
    assert real / padded > 0.9


def test_read_lines(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"a\r\nb\n\nc")
    assert read_lines(path) == ["a", "b", "", "c"]
    path.write_bytes(b"\xff\xfe bad")
    with pytest.raises(NMTError, match="UTF-8"):
        read_lines(path)
