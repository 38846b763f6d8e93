"""Checkpoint averaging: weight snapshots kept during training, and a model bundle of their mean.

Training writes the weights of each checkpoint (`train.keep_checkpoints` > 0) to `checkpoints/step_NNNNNNNN.pt` in
the run directory (`nmt.checkpoint.save_snapshot`), keeping the newest `keep_checkpoints`. `nmt average` reads
the newest N, checks that they hold the same parameters, and writes a run directory (config, SentencePiece
model(s), metadata, `model.pt` = the element-wise mean) that translate, evaluate and serve load like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmt.bundle import (
    CONFIG_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    read_metadata,
    read_run_config,
    tokenizer_files,
)
from nmt.checkpoint import snapshots
from nmt.errors import NMTError
from nmt.files import atomic_torch_save, atomic_write_bytes, atomic_write_json, safe_torch_load

if TYPE_CHECKING:
    import torch


def average_state_dicts(states: list[dict[str, torch.Tensor]], names: list[str] | None = None) -> dict[str, Any]:
    """Element-wise mean of state dicts with the same keys and shapes (floating tensors; others must be equal)."""
    import torch

    if not states:
        raise NMTError("nothing to average")
    names = names or [f"state dict {i + 1}" for i in range(len(states))]
    first = states[0]
    for state, name in zip(states[1:], names[1:], strict=True):
        if state.keys() != first.keys():
            missing = sorted(first.keys() ^ state.keys())
            raise NMTError(f"{name} does not match {names[0]}: different parameters ({', '.join(missing[:3])})")
        for key, tensor in state.items():
            if tensor.shape != first[key].shape or tensor.dtype != first[key].dtype:
                raise NMTError(
                    f"{name} does not match {names[0]}: {key} is {tuple(tensor.shape)} {tensor.dtype}, "
                    f"not {tuple(first[key].shape)} {first[key].dtype}"
                )
    averaged: dict[str, Any] = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for state in states:
                total += state[key].double()
            averaged[key] = (total / len(states)).to(tensor.dtype)
        else:
            for state, name in zip(states[1:], names[1:], strict=True):
                if not torch.equal(state[key], tensor):
                    raise NMTError(f"{name} does not match {names[0]}: {key} differs and cannot be averaged")
            averaged[key] = tensor.clone()
    return averaged


def _load_snapshot(path: Path) -> dict[str, Any]:
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise NMTError(f"cannot load {path}: not an nmt weights file")
    if payload.get("format_version") != FORMAT_VERSION:
        raise NMTError(f"{path} has bundle format {payload.get('format_version')}, not {FORMAT_VERSION}")
    return payload["model"]


def average_run(run_dir: str | Path, last: int, output: str | Path | None = None) -> Path:
    """Average the newest `last` snapshots of `run_dir` into a model bundle; returns its directory."""
    from nmt.model import Seq2Seq
    from nmt.tokenizer import Tokenizer

    run_dir = Path(run_dir)
    if last < 1:
        raise NMTError(f"--last must be at least 1, got {last}")
    config = read_run_config(run_dir)
    found = snapshots(run_dir)
    if len(found) < last:
        held = ", ".join(str(step) for step, _ in found) or "none"
        raise NMTError(
            f"{run_dir} holds {len(found)} checkpoint(s) (steps: {held}), fewer than --last {last}; "
            f"train with train.keep_checkpoints >= {last}"
        )
    chosen = found[-last:]
    out = Path(output) if output else run_dir / f"averaged_last_{last}"
    if out.resolve() == run_dir.resolve():
        raise NMTError("--output must not be the run directory itself (its best weights would be replaced)")
    if (out / WEIGHTS_FILE).exists() and "averaged_checkpoints" not in _metadata_or_empty(out):
        raise NMTError(f"{out} already holds a model that is not an average; choose another --output")
    names = [str(path) for _, path in chosen]
    averaged = average_state_dicts([_load_snapshot(path) for _, path in chosen], names)
    src_path, tgt_path = tokenizer_files(run_dir, config)
    src_tok = Tokenizer.load(src_path)
    tgt_tok = src_tok if tgt_path == src_path else Tokenizer.load(tgt_path)
    model = Seq2Seq(config.model, src_tok.vocab_size, tgt_tok.vocab_size)
    try:
        model.load_state_dict(averaged)
    except RuntimeError as e:
        raise NMTError(f"the checkpoints do not match the model in {run_dir / CONFIG_FILE}: {str(e)[:200]}") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NMTError(f"cannot create {out}: {e.strerror}") from None
    for path in {src_path, tgt_path, run_dir / CONFIG_FILE}:
        atomic_write_bytes(out / path.name, path.read_bytes())
    metadata = read_metadata(run_dir)
    metadata.update(averaged_from=str(run_dir), averaged_checkpoints=[step for step, _ in chosen])
    atomic_write_json(out / METADATA_FILE, metadata)
    atomic_torch_save(out / WEIGHTS_FILE, {"format_version": FORMAT_VERSION, "model": averaged})  # last: complete
    return out


def _metadata_or_empty(run_dir: Path) -> dict[str, Any]:
    try:
        return read_metadata(run_dir)
    except NMTError:
        return {}
