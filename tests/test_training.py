import json

import pytest
import torch
from synthetic import write_reversal_task

from nmt.bundle import CHECKPOINT_FILE, WEIGHTS_FILE
from nmt.config import config_from_dict
from nmt.errors import NMTError
from nmt.files import safe_torch_load
from nmt.training import TrainState, budget_progress, clip_gradients, learning_rate, train


def small_config(data_dir, **train_overrides):
    train_cfg = {"batch_tokens": 300, "max_epochs": 2, "checkpoint_every_steps": 5, "log_every_steps": 5}
    train_cfg.update(train_overrides)
    return config_from_dict(
        {
            "data": {"path": str(data_dir), "src_lang": "src", "tgt_lang": "tgt", "max_valid_examples": 30},
            "tokenizer": {"vocab_size": 20, "model_type": "bpe"},
            "model": {"embedding_dim": 16, "hidden_size": 24, "encoder_layers": 1, "decoder_layers": 1},
            "train": train_cfg,
            "decode": {"beam_size": 2},
        },
        "test",
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_reversal_task(tmp_path_factory.mktemp("rev"), train=400)


def test_clipping_bounds_the_global_norm():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(10)), torch.nn.Parameter(torch.randn(3, 3))]
    for p in params:
        p.grad = torch.randn_like(p) * 100
    before = clip_gradients(params, 1.0)
    after = torch.sqrt(sum((p.grad**2).sum() for p in params))
    assert before > 1.0 and after == pytest.approx(1.0, rel=1e-4)
    for p in params:
        p.grad = torch.full_like(p, 0.01)
    small = clip_gradients(params, 1.0)
    assert torch.sqrt(sum((p.grad**2).sum() for p in params)) == pytest.approx(float(small))


def test_learning_rate_warmup_and_decay(data):
    config = small_config(data, warmup_steps=10, lr=0.01, min_lr=0.001)
    assert learning_rate(config, TrainState(step=0)) == pytest.approx(0.001)
    assert learning_rate(config, TrainState(step=50)) == pytest.approx(0.01)
    assert learning_rate(config, TrainState(step=50, lr_scale=0.5)) == pytest.approx(0.005)
    assert learning_rate(config, TrainState(step=50, lr_scale=0.01)) == pytest.approx(0.001)  # floor


@pytest.mark.slow  # trains to the end
def test_run_directory_is_a_complete_bundle(data, tmp_path):
    state = train(small_config(data), tmp_path / "run", show_progress=False)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "spm.model", WEIGHTS_FILE, CHECKPOINT_FILE, "metadata.json", "metrics.jsonl"} <= names
    assert "training_curve.png" in names
    meta = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert meta["src_lang"] == "src" and meta["parameters"] > 0 and meta["best_valid_bleu"] == state.best_bleu
    assert "torch" in meta["versions"]
    valid = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in valid if m["type"] == "valid"] == [1, 2]


@pytest.mark.slow  # trains to the end
def test_cosine_run_anneals_to_the_floor(data, tmp_path):
    train(small_config(data, lr_schedule="cosine", lr=0.01, min_lr=0.0001), tmp_path / "run", show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [m["lr"] for m in rows if m["type"] == "train"]
    assert len(lrs) >= 3 and lrs == sorted(lrs, reverse=True) and lrs[0] < 0.01
    assert rows[-1]["type"] == "valid" and rows[-1]["lr"] == pytest.approx(0.0001)


def test_a_budget_stops_validation_keeps_the_schedule_of_the_run_resumed_from_it(data):
    """The extra validation where a budget stops a run mid-epoch can save better weights, but the LR decay and early
    stopping of the resumed run compare only with the scheduled validations, as the run without the stop does."""
    config = small_config(data, lr_schedule="plateau", lr_patience=0, early_stopping_patience=2)
    straight, stopped = TrainState(), TrainState()
    stopped.step = 8
    assert stopped.validated(config, 3.0, 5.0, 1.0, scheduled=False)
    assert (stopped.best_bleu, stopped.best_step) == (5.0, 8)
    for state in (straight, stopped):
        state.step = 17
        state.validated(config, 2.0, 4.0, 2.0)  # better than nothing scheduled before: no decay, no staleness
    assert (stopped.lr_scale, stopped.plateau, stopped.stale) == (straight.lr_scale, straight.plateau, straight.stale)
    assert (stopped.lr_scale, stopped.stale) == (1.0, 0)
    assert (stopped.best_bleu, stopped.best_step) == (5.0, 8)  # the saved weights stay the best validated ones


@pytest.mark.slow  # trains to the end
def test_resume_continues_exactly(data, tmp_path):
    straight = train(small_config(data, max_steps=17), tmp_path / "a", show_progress=False)
    train(small_config(data, max_steps=8), tmp_path / "b", show_progress=False)
    resumed = train(small_config(data, max_steps=17), tmp_path / "b", resume=True, show_progress=False)
    assert resumed.step == straight.step == 17
    a = safe_torch_load(tmp_path / "a" / CHECKPOINT_FILE)["model"]
    b = safe_torch_load(tmp_path / "b" / CHECKPOINT_FILE)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    def metrics(run, skip_step=None):
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        timing = ("tokens_per_s", "elapsed")
        return [
            {k: v for k, v in m.items() if k not in timing}
            for m in rows
            if not (m["type"] == "valid" and m["step"] == skip_step)  # the stop at step 8 validated once more
        ]

    assert metrics("a") == metrics("b", skip_step=8)


def test_a_resumed_run_keeps_what_its_start_measured(data, tmp_path, monkeypatch):
    """Training measures what `auto` precision means here and which way the fp32 decoder trains faster; a run
    resumed where the measurements now come out the other way keeps the checkpoint's answers, and ends with the
    uninterrupted run's weights."""
    import nmt.precision
    import nmt.training

    measured = {"loop": 2.0, "bf16": False}
    monkeypatch.setattr(nmt.training, "STEP_LOOP_MIN_HIDDEN", 0)
    monkeypatch.setattr(nmt.training, "step_loop_speedup", lambda rnn: measured["loop"])
    monkeypatch.setattr(nmt.precision, "bf16_fast", lambda device: measured["bf16"])

    def config(steps):
        raw = small_config(data, max_steps=steps, precision="auto").to_dict()
        raw["model"].update(attention="luong", input_feeding=True)  # a decoder run step by step
        return config_from_dict(raw, "test")

    train(config(12), tmp_path / "a", show_progress=False)
    train(config(6), tmp_path / "b", show_progress=False)
    measured.update(loop=0.5, bf16=True)
    resumed = train(config(12), tmp_path / "b", resume=True, show_progress=False)
    assert (resumed.precision, resumed.fp32_step_loop) == ("fp32", True)
    a = safe_torch_load(tmp_path / "a" / CHECKPOINT_FILE)["model"]
    b = safe_torch_load(tmp_path / "b" / CHECKPOINT_FILE)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "train.log").read_text()
    assert "decoder RNN steps in fp32: the step loop (the loop measured at 2.00x" in log
    assert "resumed in the run's precision fp32 ('auto' measured bf16)" in log
    assert "resumed with the run's fp32 decoder path (step loop: True)" in log


def test_existing_run_needs_resume_and_the_same_config(data, tmp_path):
    train(small_config(data, max_steps=3), tmp_path / "r", show_progress=False)
    with pytest.raises(NMTError, match="already holds a training run"):
        train(small_config(data, max_steps=3), tmp_path / "r", show_progress=False)
    changed = small_config(data, max_steps=6, lr=0.5)
    with pytest.raises(NMTError, match=r"different config \(train\.lr\)"):
        train(changed, tmp_path / "r", resume=True, show_progress=False)
    with pytest.raises(NMTError, match="nothing to resume"):
        train(small_config(data), tmp_path / "fresh", resume=True, show_progress=False)


def test_non_finite_loss_is_skipped_then_stops(data, tmp_path, monkeypatch):
    import nmt.training

    real = nmt.training.sequence_loss
    calls = {"n": 0}

    def poisoned(logits, targets, label_smoothing=0.0, scale=1.0):
        loss, nll = real(logits, targets, label_smoothing, scale)
        calls["n"] += 1
        return (loss * float("nan"), nll) if calls["n"] > 4 else (loss, nll)

    monkeypatch.setattr(nmt.training, "sequence_loss", poisoned)
    with pytest.raises(NMTError, match="non-finite steps in a row"):
        train(small_config(data, max_nonfinite_steps=3, checkpoint_every_steps=2), tmp_path / "n", show_progress=False)
    log = (tmp_path / "n" / "train.log").read_text()
    assert "step skipped" in log
    checkpoint = safe_torch_load(tmp_path / "n" / CHECKPOINT_FILE)
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_full_disk_is_refused_before_training(data, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(NMTError, match="not enough free disk space"):
        train(small_config(data), tmp_path / "full", show_progress=False)


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    import errno

    import nmt.files

    run_dir = tmp_path / "enospc"
    train(small_config(data, max_steps=4), run_dir, show_progress=False)
    before = (run_dir / CHECKPOINT_FILE).read_bytes()
    real_fdopen = nmt.files.os.fdopen

    class FullDisk:
        def __init__(self, fd, mode):
            self.f = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nmt.files.os, "fdopen", FullDisk)
    with pytest.raises(NMTError, match=r"cannot write .*: No space left on device"):
        train(small_config(data, max_steps=8), run_dir, resume=True, show_progress=False)
    monkeypatch.undo()
    assert (run_dir / CHECKPOINT_FILE).read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))


def test_run_directory_that_cannot_be_created(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NMTError, match="cannot create run directory"):
        train(small_config(data), blocker / "run", show_progress=False)


def test_cosine_schedule_follows_the_budget(data):
    config = small_config(data, lr_schedule="cosine", lr=0.01, min_lr=0.001, max_epochs=4, max_minutes=10)
    assert learning_rate(config, TrainState(step=5), 0.0) == pytest.approx(0.01)
    assert learning_rate(config, TrainState(step=5), 0.5) == pytest.approx(0.0055)
    assert learning_rate(config, TrainState(step=5), 1.0) == pytest.approx(0.001)
    assert learning_rate(config, TrainState(step=5, lr_scale=0.1), 0.0) == pytest.approx(0.01)  # no plateau decay
    # the budget is whichever of epochs, steps and minutes runs out first
    assert budget_progress(config, TrainState(epoch=1, batch_in_epoch=5, elapsed=60), 10) == pytest.approx(0.375)
    assert budget_progress(config, TrainState(epoch=1, batch_in_epoch=5, elapsed=300), 10) == pytest.approx(0.5)
