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


def entry_files(root):
    [entry] = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return {name: (entry / name).read_bytes() for name in ("src_ids.bin", "tgt_ids.bin", "src_offsets.npy")}


def corpus_split(tmp_path, n=57):
    src = [("ab c" * (i % 7))[: i % 11] for i in range(n)]
    return write_split(tmp_path / "d", src, [s[::-1] + "z" * (i % 3) for i, s in enumerate(src)])


def test_the_pool_over_shards_gives_the_same_files_as_one_process(tmp_path):
    """Shards of 5 pairs on 2 processes: byte for byte the entry one process writes in one shard, and the ids the
    tokenizer gives sentence by sentence; no shard directory is left."""
    ds = corpus_split(tmp_path)
    tok = CharTokenizer()
    one, _ = cached_tokenize(ds, tok, tok, "d:train", root=tmp_path / "one", workers=1, shard_pairs=1000)
    messages = []
    pool, hit = cached_tokenize(
        ds, tok, tok, "d:train", tmp_path / "pool", messages.append, workers=2, shard_pairs=5
    )  # fmt: skip
    assert not hit and "12 shards, 2 processes" in messages[0]
    assert entry_files(tmp_path / "one") == entry_files(tmp_path / "pool")
    for i in range(len(ds)):
        assert pool.src(i).tolist() == tok.encode([ds[i]["src"]])[0] == one.src(i).tolist()
        assert pool.tgt(i).tolist() == tok.encode([ds[i]["tgt"]])[0]
    assert not list((tmp_path / "pool").glob(".shards-*")) and not list((tmp_path / "pool").glob(".tmp-*"))


def test_sentencepiece_ids_are_the_same_from_the_pool(tmp_path):
    from nmt.config import TokenizerConfig
    from nmt.token_cache import sentences
    from nmt.tokenizer import train_sentencepiece

    data = write_reversal_task(tmp_path / "data", train=200)
    ds = load_split(DataConfig(path=str(data), src_lang="src", tgt_lang="tgt"), "train")
    tok = train_sentencepiece(sentences(ds, ("src", "tgt")), tmp_path / "spm.model", TokenizerConfig(vocab_size=30))
    cached_tokenize(ds, tok, tok, "r:train", root=tmp_path / "one", workers=1, shard_pairs=1000)
    pool, _ = cached_tokenize(ds, tok, tok, "r:train", root=tmp_path / "pool", workers=2, shard_pairs=30)
    assert entry_files(tmp_path / "one") == entry_files(tmp_path / "pool")
    assert [pool.src(i).tolist() for i in range(len(ds))] == tok.encode(list(ds["src"]))


def test_a_killed_process_shard_is_redone_and_finished_shards_are_kept(tmp_path):
    """A process died while writing shard 1 (a partial file under a temporary name, an unmarked shard file): the
    next start redoes that shard only, and the entry is whole."""
    from nmt.token_cache import _Shards, cache_key

    ds = corpus_split(tmp_path, n=20)
    tok, root = CharTokenizer(), tmp_path / "cache"
    key = cache_key(ds._fingerprint, tok.model_bytes, tok.model_bytes)
    shards = _Shards(ds, tok, tok, np.dtype(np.uint16), root / f".shards-{key}-10", 10, root / key)
    assert shards.encode(0) and shards.done(0)
    (shards.directory / "000001.src.part999").write_bytes(b"\x07" * 13)
    (shards.directory / "000001.src.bin").write_bytes(b"\x07" * 13)
    tok.calls = 0
    corpus, hit = cached_tokenize(ds, tok, tok, "d:train", root=root, workers=1, shard_pairs=10)
    assert not hit and tok.calls == 2  # shard 1, both sides
    assert [corpus.src(i).tolist() for i in range(20)] == tok.encode(list(ds["src"]))
    assert not shards.directory.exists()


def test_a_shard_held_by_another_process_is_waited_for_and_redone_if_it_dies(tmp_path):
    """Another process (a torchrun rank) holds shard 0's lock and dies before its marker: this one waits for the
    lock, then encodes the shard itself."""
    import fcntl
    import threading
    import time

    from nmt.token_cache import cache_key

    ds = corpus_split(tmp_path, n=20)
    tok, root = CharTokenizer(), tmp_path / "cache"
    directory = root / f".shards-{cache_key(ds._fingerprint, tok.model_bytes, tok.model_bytes)}-10"
    directory.mkdir(parents=True)
    held = open(directory / "000000.lock", "a+b")  # noqa: SIM115 - a separate open file: its own flock
    fcntl.flock(held, fcntl.LOCK_EX)
    threading.Timer(0.5, held.close).start()  # the holder dies: the lock goes with it, no marker
    start = time.monotonic()
    corpus, _ = cached_tokenize(ds, tok, tok, "d:train", root=root, workers=1, shard_pairs=10)
    assert time.monotonic() - start >= 0.4
    assert [corpus.tgt(i).tolist() for i in range(20)] == tok.encode(list(ds["tgt"]))


def test_progress_shows_pairs_per_second_and_time_left():
    from nmt.token_cache import _Progress

    messages = []
    progress = _Progress(1000, messages.append, every=0.0)
    progress.add(250)
    progress.add(750)  # done: the closing line is the caller's
    assert len(messages) == 1 and "250 of 1,000 pairs (25%)" in messages[0]
    assert "pairs/s" in messages[0] and " s left" in messages[0]


def test_sentencepiece_sample_is_the_whole_split_or_spread_over_it(tmp_path):
    from nmt.token_cache import sentences

    ds = write_split(tmp_path / "d", [f"s{i}" for i in range(1500)], [f"t{i}" for i in range(1500)])
    whole = list(sentences(ds, ("src", "tgt"), limit=3000))
    assert whole == list(sentences(ds, ("src", "tgt"))) and len(whole) == 3000
    assert whole[:2] == ["s0", "s1"] and whole[1000] == "t0"  # batch by batch, as SentencePiece always read it
    sample = list(sentences(ds, ("src",), limit=100))
    assert len(sample) == 100 and sample[0] == "s0" and sample[-1] == "s1499" and len(set(sample)) == 100


def test_prepared_data_is_what_a_training_start_opens(tmp_path, monkeypatch):
    """`nmt prepare`'s work (prepare_data) leaves the caches from which a training start neither trains
    SentencePiece nor tokenizes, and adds no cache file."""
    from nmt.config import Config
    from nmt.training import load_run_data, prepare_data

    data = write_reversal_task(tmp_path / "data", train=300)
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "nmt-cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    config = Config.model_validate(
        {"data": {"path": str(data), "src_lang": "src", "tgt_lang": "tgt"}, "tokenizer": {"vocab_size": 30}}
    )
    messages = []
    prepared = prepare_data(
        config.model_copy(update={"tokenizer": config.tokenizer.model_copy(update={"workers": 2})}), messages.append
    )
    assert any(m.startswith("tokenizing") for m in messages)
    before = cache_files(tmp_path / "nmt-cache", tmp_path / "hf-cache")
    messages.clear()
    (tmp_path / "run").mkdir()
    started = load_run_data(tmp_path / "run", config, messages.append)
    assert not any("tokeniz" in m for m in messages)
    assert started.train_indices.tolist() == prepared.train_indices.tolist()
    after = cache_files(tmp_path / "nmt-cache", tmp_path / "hf-cache")
    assert [f for f in after if f not in before and not f.endswith(".lock")] == []


@pytest.mark.slow
def test_nmt_prepare_command(tmp_path):
    data = write_reversal_task(tmp_path / "data", train=300)
    caches = {"NMT_CACHE_DIR": str(tmp_path / "nmt-cache"), "HF_DATASETS_CACHE": str(tmp_path / "hf-cache")}
    args = ["--config", data / "reversal.yaml", "--set", f"data.path={data}"]
    prepared = run_nmt("prepare", *args, "--set", "tokenizer.workers=2", **caches)
    assert "prepared 300 training pairs" in prepared.stdout and "tokenizing" in prepared.stderr
    assert entries(tmp_path / "nmt-cache" / "tokenized")


class SlowTokenizer(CharTokenizer):
    def encode(self, texts):
        import time

        time.sleep(0.05)  # long enough for the other process to take shards too
        return super().encode(texts)


def _tokenize_as_a_rank(ds, root, queue):
    tok = SlowTokenizer()
    corpus, _ = cached_tokenize(ds, tok, tok, "d:train", root=root, workers=1, shard_pairs=4)
    queue.put((tok.calls, corpus.src_ids.tobytes()))


def test_two_processes_share_the_shards_of_one_entry(tmp_path):
    """Two processes asking for the same entry at once (torchrun's ranks) each encode some of the shards, every
    shard once, and both open the same complete entry."""
    import multiprocessing

    ds = corpus_split(tmp_path, n=40)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ranks = [context.Process(target=_tokenize_as_a_rank, args=(ds, tmp_path / "cache", queue)) for _ in range(2)]
    for rank in ranks:
        rank.start()
    results = [queue.get(timeout=60) for _ in ranks]
    for rank in ranks:
        rank.join(timeout=60)
    calls = [c for c, _ in results]
    assert all(c > 0 for c in calls) and sum(calls) == 2 * 10  # 10 shards, two sides each, each encoded once
    one, _ = cached_tokenize(ds, CharTokenizer(), CharTokenizer(), "d:train", root=tmp_path / "one", workers=1)
    assert results[0][1] == results[1][1] == one.src_ids.tobytes()
