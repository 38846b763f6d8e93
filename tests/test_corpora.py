"""Several training corpora mixed by weight (`data.corpora`): the draw, its determinism and coverage, the report,
the cache key, and an exact resume."""

import json

import numpy as np
import pytest
import torch
from synthetic import reversal_pairs

from nmt.bundle import CHECKPOINT_FILE
from nmt.config import config_from_dict
from nmt.data import Mixture
from nmt.errors import NMTError
from nmt.files import safe_torch_load
from nmt.training import Run, _mixed_corpora, load_run_data, train


def test_counts_follow_the_weights_by_largest_remainder():
    assert Mixture([np.arange(100), np.arange(100, 200)], [3, 1]).counts() == [150, 50]
    assert Mixture([np.arange(4), np.arange(4, 10)], [1, 1]).counts() == [5, 5]
    assert Mixture([np.arange(5), np.arange(5, 8), np.arange(8, 10)], [1, 1, 1]).counts() == [4, 3, 3]
    assert Mixture([np.arange(7)], [2.5]).counts() == [7]


def test_an_epoch_draws_each_corpus_in_its_share_deterministically():
    big, small = np.arange(0, 100), np.arange(100, 140)  # 140 examples: weights 1:3 give 35 and 105
    mixture = Mixture([big, small], [1, 3])
    epochs = [mixture.epoch(seed=7, epoch=e) for e in range(6)]
    for drawn in epochs:
        assert len(drawn) == 140
        assert (drawn < 100).sum() == 35 and (drawn >= 100).sum() == 105
    assert all((a == b).all() for a, b in zip(epochs, [mixture.epoch(7, e) for e in range(6)], strict=True))
    assert not (epochs[0] == epochs[1]).all()
    assert not (mixture.epoch(8, 0) == epochs[0]).all()
    # the down-sampled corpus: consecutive epochs continue one permutation, so 100 examples come in 3 epochs (105)
    from_big = np.concatenate([e[e < 100] for e in epochs[:3]])
    assert sorted(from_big[:100].tolist()) == list(range(100))
    # the up-sampled one: each of its 40 examples 2 or 3 times in an epoch, 105 in all
    counts = np.bincount(epochs[0][epochs[0] >= 100] - 100, minlength=40)
    assert counts.min() >= 2 and counts.max() <= 3 and counts.sum() == 105


def write_corpus(directory, n, seed, letters_offset=0):
    """A reversal corpus in `{split}.src`/`{split}.tgt` files; offset letters tell the corpora apart."""
    src, tgt = reversal_pairs(n, seed)
    shift = str.maketrans("abcdefghijkl", "mnopqrstuvwx") if letters_offset else None
    if shift:
        src, tgt = [s.translate(shift) for s in src], [t.translate(shift) for t in tgt]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.src").write_text("".join(s + "\n" for s in src))
    (directory / "train.tgt").write_text("".join(t + "\n" for t in tgt))
    return directory


@pytest.fixture
def corpora(tmp_path, monkeypatch):
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    a = write_corpus(tmp_path / "a", 200, 0)
    b = write_corpus(tmp_path / "b", 120, 1, letters_offset=1)
    (b / "train.src").write_text((b / "train.src").read_text() + "\n")  # one pair with an empty source
    (b / "train.tgt").write_text((b / "train.tgt").read_text() + "x y z\n")
    valid = write_corpus(tmp_path / "valid", 20, 2)
    (valid / "train.src").rename(valid / "val.src")
    (valid / "train.tgt").rename(valid / "val.tgt")
    return a, b, valid


def mixed_config(corpora, weights=(3, 1), **train_overrides):
    a, b, valid = corpora
    train_cfg = {"batch_tokens": 300, "max_epochs": 3, "checkpoint_every_steps": 5, "log_every_steps": 5}
    return config_from_dict(
        {
            "data": {
                "path": str(valid),
                "src_lang": "src",
                "tgt_lang": "tgt",
                "corpora": [
                    {"path": str(a), "weight": weights[0]},
                    {"path": str(b), "weight": weights[1], "clean": {"empty": True}},
                ],
            },
            "tokenizer": {"vocab_size": 30, "model_type": "bpe"},
            "model": {"embedding_dim": 16, "hidden_size": 24, "encoder_layers": 1, "decoder_layers": 1},
            "train": train_cfg | train_overrides,
            "decode": {"beam_size": 1},
        },
        "test",
    )


def test_two_corpora_mixed_3_to_1_with_their_own_cleaning(corpora, tmp_path):
    config = mixed_config(corpora)
    lines = []
    data = load_run_data(tmp_path, config, lines.append)
    reports = data.report["corpora"]
    assert [(r["pairs"], r["usable"], r["per_epoch"], r["weight"]) for r in reports] == [
        (200, 200, 240, 3),
        (120, 120, 80, 1),
    ]
    assert "cleaning" not in reports[0] and reports[1]["cleaning"]["dropped"] == {"empty": 1}
    assert any(line.endswith("weight 3: 240 per epoch") for line in lines)
    for epoch in range(3):
        drawn = data.epoch_indices(config.seed, epoch)
        assert (drawn < 200).sum() == 240 and (drawn >= 200).sum() == 80  # 3:1, the first corpus repeated
    b_src = {data.train.src(i).tobytes() for i in range(200, 320)}
    a_src = {data.train.src(i).tobytes() for i in range(200)}
    assert not a_src & b_src  # the index ranges really are the two corpora
    run = Run(config, tmp_path / "run", show_progress=False)
    try:
        batches = run.epoch_batches(1)
    finally:
        run.close()
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == sorted(data.epoch_indices(config.seed, 1).tolist())


def test_the_corpora_key_the_tokenization_cache_but_their_weights_do_not(corpora, tmp_path):
    mixed, _ = _mixed_corpora(mixed_config(corpora), None)
    reweighted, _ = _mixed_corpora(mixed_config(corpora, weights=(1, 5)), None)
    assert reweighted._fingerprint == mixed._fingerprint  # the same pairs: the same tokens
    config = mixed_config(corpora)
    config.data.corpora[1].clean = None  # the second corpus no longer cleaned
    uncleaned, _ = _mixed_corpora(config, None)
    config = mixed_config(corpora)
    config.data.corpora[0].max_examples = 150
    shorter, _ = _mixed_corpora(config, None)
    config = mixed_config(corpora)
    config.data.corpora.reverse()
    swapped, _ = _mixed_corpora(config, None)
    assert len({mixed._fingerprint, uncleaned._fingerprint, shorter._fingerprint, swapped._fingerprint}) == 4
    assert (len(mixed), len(uncleaned), len(shorter)) == (320, 321, 270)


def test_corpus_config_errors_name_the_key_and_file(corpora):
    with pytest.raises(NMTError, match=r"my\.yaml: unknown key 'data\.corpora\.1\.wieght'"):
        config_from_dict({"data": {"corpora": [{"path": "a"}, {"path": "b", "wieght": 2}]}}, "my.yaml")
    with pytest.raises(NMTError, match=r"my\.yaml: .*'data\.corpora\.0'.*exactly one of 'path' and 'hub_id'"):
        config_from_dict({"data": {"corpora": [{"path": "a", "hub_id": "wmt16"}]}}, "my.yaml")
    with pytest.raises(NMTError, match=r"my\.yaml: invalid value for 'data\.corpora\.0\.weight'"):
        config_from_dict({"data": {"corpora": [{"path": "a", "weight": 0}]}}, "my.yaml")
    with pytest.raises(NMTError, match="max_examples"):
        config_from_dict({"data": {"corpora": [{"path": "a"}], "max_train_examples": 5}}, "my.yaml")
    config = mixed_config(corpora)
    config.data.corpora[0].path = str(corpora[0] / "nope")
    with pytest.raises(NMTError, match=r"data\.corpora: path is not a directory: .*nope"):
        load_run_data(corpora[0], config)


def test_a_mixed_run_resumes_exactly(corpora, tmp_path):
    """Across an epoch boundary (two draws): stopped at step 9 and resumed, the weights and metrics of the run that
    went straight through."""
    straight = train(mixed_config(corpora, max_steps=20), tmp_path / "a", show_progress=False)
    train(mixed_config(corpora, max_steps=9), tmp_path / "b", show_progress=False)
    resumed = train(mixed_config(corpora, max_steps=20), tmp_path / "b", resume=True, show_progress=False)
    assert resumed.step == straight.step == 20 and straight.epoch >= 1
    a = safe_torch_load(tmp_path / "a" / CHECKPOINT_FILE)["model"]
    b = safe_torch_load(tmp_path / "b" / CHECKPOINT_FILE)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    def metrics(run, skip_step=None):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in m.items() if k not in ("tokens_per_s", "elapsed")}
            for m in rows
            if not (m["type"] == "valid" and m["step"] == skip_step)
        ]

    assert metrics("a") == metrics("b", skip_step=9)
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert [c["per_epoch"] for c in meta["data"]["corpora"]] == [240, 80]
