"""Checkpoints in a run directory: the last full training state (`last.pt`, what `--resume` loads) and the best
weights by validation BLEU (`model.pt`, what translation loads). Only the main process calls these; every write is
atomic (a crash leaves the old file or the new one)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from nmt.bundle import CHECKPOINT_FILE, FORMAT_VERSION, WEIGHTS_FILE, weights_payload
from nmt.errors import NMTError
from nmt.files import atomic_torch_save, safe_torch_load

SNAPSHOT_DIR = "checkpoints"  # weights of the last `train.keep_checkpoints` checkpoints, for `nmt average`
_SNAPSHOT = re.compile(r"^step_(\d+)\.pt$")


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """The weight snapshots of a run, oldest first, as (step, path)."""
    directory = Path(run_dir) / SNAPSHOT_DIR
    if not directory.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := _SNAPSHOT.match(p.name)))


def save_snapshot(run_dir: Path, model: torch.nn.Module, step: int, keep: int) -> None:
    """Write the weights at `step` to `checkpoints/step_NNNNNNNN.pt` and delete all but the newest `keep`."""
    directory = Path(run_dir) / SNAPSHOT_DIR
    directory.mkdir(exist_ok=True)
    for stale in directory.glob(".*.tmp"):  # left by a crash in the middle of an earlier snapshot's write
        stale.unlink(missing_ok=True)
    atomic_torch_save(directory / f"step_{step:08d}.pt", {**weights_payload(model), "step": step})
    for _, path in snapshots(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def save_checkpoint(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    rng: list,
    keep: int = 0,
) -> None:
    """Write `last.pt`: weights, optimizer, the training state (a JSON-able dict) and every process's RNG state;
    with `keep` > 0 also a weight snapshot of this step, keeping the newest `keep` (for `nmt average`)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "state": json.dumps(state),
        "rng_torch": rng,
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    atomic_torch_save(run_dir / CHECKPOINT_FILE, payload)
    if keep:
        save_snapshot(run_dir, model, state["step"], keep)


def load_checkpoint(
    run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int, world: int
) -> dict[str, Any]:
    """Load `last.pt` into `model` and `optimizer`, restore this process's RNG state; returns the training state.

    When the process count changed since the checkpoint, the fresh per-process seeds are kept."""
    path = run_dir / CHECKPOINT_FILE
    payload = safe_torch_load(path)
    try:
        if payload.get("format_version") != FORMAT_VERSION:
            raise NMTError(f"{path} was written by an incompatible nmt version")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        state = json.loads(payload["state"])
        rng = payload["rng_torch"]
        if len(rng) == world:
            torch.set_rng_state(rng[rank])
        if payload["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["rng_cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise NMTError(f"cannot resume from {path}: {e.__class__.__name__}: {str(e)[:200]}") from None
    return state


def save_best_weights(run_dir: Path, model: torch.nn.Module) -> None:
    """Write `model.pt`: the weights alone, what `nmt translate` and `nmt serve` load."""
    atomic_torch_save(run_dir / WEIGHTS_FILE, weights_payload(model))
