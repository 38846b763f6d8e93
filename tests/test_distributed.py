"""Data-parallel training launched the way users launch it: torchrun with 2 CPU processes (gloo), two single-process
"nodes" meeting through a c10d rendezvous, and a worker SIGKILLed mid-run then resumed under torchrun. Each must
agree with one process (or with an uninterrupted run) at the same global batch.

Every launch runs in its own process group with a deadline: a hang fails the test with the command and the log
tails, and the whole group (torchrun agent and workers) is killed, so CI never sticks.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nmt.files import safe_torch_load
from tests.conftest import REPO, nmt_env
from tests.synthetic import write_reversal_task

CONFIG = """\
data: {src_lang: src, tgt_lang: tgt, max_valid_examples: 20}
tokenizer: {vocab_size: 20, model_type: bpe}
model: {embedding_dim: 16, hidden_size: 24, encoder_layers: 1, decoder_layers: 1, dropout: 0.0,
        embedding_dropout: 0.0}
train: {batch_tokens: 400, max_epochs: 3, log_every_steps: 1, checkpoint_every_steps: 4, threads: 1,
        label_smoothing: 0.1, lr_schedule: cosine, warmup_steps: 3, lr: 0.005, early_stopping_patience: null}
"""
# Tolerance: both runs add the same per-sentence losses and gradients, only in a different order (gloo's
# all-reduce vs one batched sum), so they differ by float32 rounding, amplified a little by the Adam steps.
LOSS_TOLERANCE = 1e-4
DEADLINE = 240  # seconds for one launch on a loaded 2-core machine; a healthy one takes 10-30

# Runs `nmt` and SIGKILLs this process at its N-th all-reduce when it is torchrun's rank RANK (a worker dying
# mid-step, while the others wait for it inside a collective).
KILLER = """
import os, signal, sys
import torch.distributed as dist
rank, n = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
original = dist.all_reduce
def all_reduce(*args, **kwargs):
    calls["n"] += 1
    if os.environ.get("RANK") == rank and calls["n"] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
dist.all_reduce = all_reduce
from nmt.cli import main
sys.exit(main(sys.argv[3:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nmt_args(data: Path, run_dir: Path, *extra: str, resume: bool = False) -> list[str]:
    args = ["train", "--config", str(data / "ddp.yaml"), "--set", f"data.path={data}", "--output-dir", str(run_dir)]
    return args + list(extra) + ["--quiet"] + (["--resume"] if resume else [])


def torchrun(*options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--monitor-interval=0.2", *options]


def launch(cmd: list[str], cache: Path) -> subprocess.Popen:
    env = nmt_env(OMP_NUM_THREADS="1", NMT_CACHE_DIR=str(cache))
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_all(procs: list[subprocess.Popen], cmds: list[list[str]], deadline: float = DEADLINE) -> list[tuple]:
    """Wait for every process; past the deadline kill them all (with their workers) and fail naming the hung command."""
    results = []
    for proc, cmd in zip(procs, cmds, strict=True):
        try:
            out, err = proc.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            kill_trees(procs)
            out, err = proc.communicate(timeout=30)
            pytest.fail(
                f"hang: no exit within {deadline} s, killed with all its processes: {' '.join(cmd)}\n{err[-3000:]}"
            )
        results.append((proc.returncode, out, err))
    return results


def kill_trees(procs: list[subprocess.Popen]) -> None:
    """SIGKILL each process and all its descendants: torchrun starts its workers in sessions of their own, so
    they are found through /proc before anything dies (an orphaned worker would keep the pipes open)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [p.pid for p in procs]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(cmd: list[str], cache: Path, expect: int = 0) -> str:
    [(code, _, err)] = wait_all([launch(cmd, cache)], [cmd])
    assert code == expect, f"exit {code} (expected {expect}): {' '.join(cmd)}\n{err[-3000:]}"
    return err


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return safe_torch_load(run_dir / "last.pt")["model"]


def assert_same_run(a: Path, b: Path) -> None:
    """Losses, learning rates and validation BLEU step by step, and the final weights, within float tolerance."""
    ma, mb = metrics(a), metrics(b)
    assert [(m["type"], m["step"], m["epoch"]) for m in ma] == [(m["type"], m["step"], m["epoch"]) for m in mb]
    train_a, train_b = [m for m in ma if m["type"] == "train"], [m for m in mb if m["type"] == "train"]
    assert [m["train_loss"] for m in train_b] == pytest.approx([m["train_loss"] for m in train_a], rel=LOSS_TOLERANCE)
    assert [m["lr"] for m in train_b] == pytest.approx([m["lr"] for m in train_a], rel=1e-9)
    valid_a, valid_b = [m for m in ma if m["type"] == "valid"], [m for m in mb if m["type"] == "valid"]
    assert [m["lr"] for m in valid_b] == pytest.approx([m["lr"] for m in valid_a], rel=1e-9)
    assert [m["valid_loss"] for m in valid_b] == pytest.approx([m["valid_loss"] for m in valid_a], abs=2e-4)
    assert [m["valid_bleu"] for m in valid_b] == pytest.approx([m["valid_bleu"] for m in valid_a], abs=0.5)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=1e-3, atol=1e-5), k


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = write_reversal_task(root / "data", train=600)
    (data / "ddp.yaml").write_text(CONFIG)
    cache = root / "cache"
    reference = root / "one"
    run([sys.executable, "-m", "nmt", *nmt_args(data, reference)], cache)
    valid = [m for m in metrics(reference) if m["type"] == "valid"]
    assert [m["epoch"] for m in valid] == [1, 2, 3]  # validation every epoch, 3 epochs
    return data, cache, reference


@pytest.mark.slow
def test_two_processes_match_one_over_three_epochs(task, tmp_path):
    data, _, reference = task
    cache = tmp_path / "cache"  # empty: the first process tokenizes, the other waits and reads the same entries
    run(torchrun("--standalone", "--nproc_per_node=2", "-m", "nmt", *nmt_args(data, tmp_path / "two")), cache)
    assert len([p for p in (cache / "tokenized").iterdir() if p.is_dir()]) == 2  # train and validation, once each
    assert_same_run(reference, tmp_path / "two")
    assert len([m for m in metrics(reference) if m["type"] == "train"]) > 20


@pytest.mark.slow
def test_two_processes_match_one_with_validation_every_n_steps(task, tmp_path):
    data, cache, _ = task
    every = ("--set", "train.valid_every_steps=7")
    run([sys.executable, "-m", "nmt", *nmt_args(data, tmp_path / "one", *every)], cache)
    run(torchrun("--standalone", "--nproc_per_node=2", "-m", "nmt", *nmt_args(data, tmp_path / "two", *every)), cache)
    assert len([m for m in metrics(tmp_path / "one") if m["type"] == "valid"]) >= 4
    assert_same_run(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_two_single_process_nodes_match_one_process(task, tmp_path):
    data, cache, reference = task
    endpoint = f"127.0.0.1:{free_port()}"
    node = torchrun(
        "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}", "--rdzv-id=nmt-test"
    )
    cmd = [*node, "-m", "nmt", *nmt_args(data, tmp_path / "nodes")]
    results = wait_all([launch(cmd, cache), launch(cmd, cache)], [cmd, cmd])
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert_same_run(reference, tmp_path / "nodes")


@pytest.mark.slow
def test_worker_killed_mid_run_then_resumed_under_torchrun(task, tmp_path):
    data, cache, _ = task
    two = ("--standalone", "--nproc_per_node=2")
    straight = tmp_path / "straight"
    run(torchrun(*two, "-m", "nmt", *nmt_args(data, straight)), cache)
    crashed = tmp_path / "crashed"
    # rank 1 dies at its 15th all-reduce (step 15, mid-epoch 2; the last checkpoint is step 12)
    err = run(
        torchrun(*two, "--no-python", sys.executable, "-c", KILLER, "1", "15", *nmt_args(data, crashed)), cache, 1
    )
    state = json.loads(safe_torch_load(crashed / "last.pt")["state"])
    assert 0 < state["step"] < 15, err[-2000:]
    run(torchrun(*two, "-m", "nmt", *nmt_args(data, crashed, resume=True)), cache)
    a, b = weights(straight), weights(crashed)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same processes, the same order of sums: bitwise
    strip = ("tokens_per_s", "elapsed")
    assert [{k: v for k, v in m.items() if k not in strip} for m in metrics(crashed)] == [
        {k: v for k, v in m.items() if k not in strip} for m in metrics(straight)
    ]


def test_a_hung_launch_fails_with_a_clear_message_and_is_killed(tmp_path):
    """A hang is killed with everything it started, even a grandchild in its own session holding the pipes."""
    grandchild = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
    cmd = [sys.executable, "-c", grandchild + " start_new_session=True); time.sleep(60)"]
    proc = launch(cmd, tmp_path)
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="hang: no exit within 2 s"):
        wait_all([proc], [cmd], deadline=2)
    assert proc.poll() is not None and time.monotonic() - start < 30
