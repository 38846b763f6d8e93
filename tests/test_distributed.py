"""Data-parallel training under torchrun: 2 CPU processes (gloo) match 1 process at the same global batch."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, nmt_env
from synthetic import write_reversal_task

from nmt.files import safe_torch_load

pytestmark = pytest.mark.slow  # trains under torchrun

CONFIG = """\
data: {src_lang: src, tgt_lang: tgt, max_valid_examples: 20}
tokenizer: {vocab_size: 20, model_type: bpe}
model: {embedding_dim: 16, hidden_size: 24, encoder_layers: 1, decoder_layers: 1, dropout: 0.0,
        embedding_dropout: 0.0}
train: {batch_tokens: 400, max_steps: 8, log_every_steps: 1, threads: 1, label_smoothing: 0.1}
"""
# Tolerance: both runs add the same per-sentence losses and gradients, only in a different order (gloo's
# all-reduce vs one batched sum), so they differ by float32 rounding, amplified a little by 8 Adam steps.
TOLERANCE = 1e-4


def train(data, run_dir, processes):
    args = [
        "train",
        "--config",
        str(data / "ddp.yaml"),
        "--set",
        f"data.path={data}",
        "--output-dir",
        str(run_dir),
        "--quiet",
    ]
    if processes == 1:
        cmd = [sys.executable, "-m", "nmt", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "nmt",
            *args,
        ]
    proc = subprocess.run(cmd, cwd=REPO, env=nmt_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_at_the_same_global_batch(tmp_path):
    data = write_reversal_task(tmp_path / "data", train=400)
    (data / "ddp.yaml").write_text(CONFIG)
    single = train(data, tmp_path / "one", 1)
    double = train(data, tmp_path / "two", 2)
    losses_1 = [m["train_loss"] for m in single if m["type"] == "train"]
    losses_2 = [m["train_loss"] for m in double if m["type"] == "train"]
    assert len(losses_1) == len(losses_2) == 8
    assert losses_2 == pytest.approx(losses_1, rel=TOLERANCE)
    w1 = safe_torch_load(tmp_path / "one" / "last.pt")["model"]
    w2 = safe_torch_load(tmp_path / "two" / "last.pt")["model"]
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-3, atol=1e-5) for k in w1)
