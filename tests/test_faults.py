"""Training survives SIGKILL at any moment, including in the middle of a checkpoint write.

A run is killed several times (inside an atomic write before the rename, inside the fsync of a temporary file,
and at random wall-clock moments), resumed with `nmt train --resume` each time, and must end with bitwise the
same weights and the same metrics as an uninterrupted run with the same seed.
"""

import json
import random
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO, nmt_env
from synthetic import write_reversal_task

from nmt.files import safe_torch_load

pytestmark = pytest.mark.slow  # trains and kills `nmt train` many times

CONFIG = """\
data: {src_lang: src, tgt_lang: tgt, max_valid_examples: 20}
tokenizer: {vocab_size: 20, model_type: bpe}
model: {embedding_dim: 16, hidden_size: 24, encoder_layers: 1, decoder_layers: 1, dropout: 0.2}
train: {batch_tokens: 300, max_epochs: 3, checkpoint_every_steps: 1, log_every_steps: 4, valid_every_steps: 15,
        threads: 1}
"""

# Runs `nmt train` and SIGKILLs itself on the N-th call of os.replace or os.fsync (a crash inside a file write).
KILLER = """
import os, signal, sys
target, n = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
original = getattr(os, target)
def crash(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(os, target, crash)
from nmt.cli import main
sys.exit(main(sys.argv[3:]))
"""


def train_args(data, run_dir, resume):
    args = ["train", "--config", str(data / "faults.yaml"), "--set", f"data.path={data}", "--output-dir", str(run_dir)]
    return args + ["--quiet"] + (["--resume"] if resume else [])


def launch(data, run_dir, crash=None):
    resume = (run_dir / "last.pt").exists()
    prefix = [sys.executable, "-c", KILLER, *crash] if crash else [sys.executable, "-m", "nmt"]
    return subprocess.Popen(
        prefix + train_args(data, run_dir, resume),
        cwd=REPO,
        env=nmt_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k not in ("tokens_per_s", "elapsed")} for m in rows]


def test_sigkill_at_any_point_then_resume_gives_the_same_run(tmp_path):
    data = write_reversal_task(tmp_path / "data", train=300)
    (data / "faults.yaml").write_text(CONFIG)
    code, err = finish(launch(data, tmp_path / "reference"))
    assert code == 0, err

    rng = random.Random(7)
    run_dir = tmp_path / "crashed"
    kills = 0
    for crash in (("replace", rng.randint(3, 12)), ("fsync", rng.randint(5, 20)), ("replace", rng.randint(20, 40))):
        code, err = finish(launch(data, run_dir, [crash[0], str(crash[1])]))
        assert code == -signal.SIGKILL, f"expected a crash at {crash}, got {code}: {err[-2000:]}"
        kills += 1
    for delay in (rng.uniform(3.0, 6.0), rng.uniform(3.0, 6.0)):
        proc = launch(data, run_dir)
        try:
            code, err = finish(proc, timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
    code, err = finish(launch(data, run_dir))
    assert code == 0, err
    assert kills >= 3

    reference = safe_torch_load(tmp_path / "reference" / "last.pt")
    crashed = safe_torch_load(run_dir / "last.pt")
    assert all(torch.equal(reference["model"][k], crashed["model"][k]) for k in reference["model"])
    assert json.loads(crashed["state"])["step"] == json.loads(reference["state"])["step"]
    assert metrics(run_dir) == metrics(tmp_path / "reference")
    assert not list(run_dir.glob(".*.tmp"))
