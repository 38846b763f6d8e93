"""The training loop: token batches, Adam, LR schedule, clipping, validation, early stopping, exact resume."""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nmt.bundle import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    CURVE_FILE,
    FORMAT_VERSION,
    METRICS_FILE,
    WEIGHTS_FILE,
    read_run_config,
    tokenizer_files,
    weights_payload,
    write_metadata,
)
from nmt.config import Config, dump_config
from nmt.data import TokenizedCorpus, collate, load_split, make_batches, tokenize
from nmt.distributed import Distributed
from nmt.errors import NMTError
from nmt.evaluation import bleu
from nmt.files import atomic_torch_save, atomic_write_text, safe_torch_load
from nmt.loss import sequence_loss
from nmt.model import Seq2Seq, count_parameters
from nmt.plot import plot_training_curve
from nmt.prediction import Translator, resolve_device
from nmt.tokenizer import Tokenizer, train_sentencepiece

# Keys that may differ between a run directory's config and the config given to `--resume`.
RESUMABLE_KEYS = {
    "train.max_epochs",
    "train.max_steps",
    "train.max_minutes",
    "train.early_stopping_patience",
    "train.threads",
    "train.device",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "data.path",
    "decode",
}


@dataclass
class TrainState:
    """Everything besides weights and optimizer that a resumed run needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    lr_scale: float = 1.0
    plateau: int = 0  # validations without improvement, for the LR decay
    stale: int = 0  # validations without improvement, for early stopping
    best_bleu: float = -1.0
    best_step: int = 0
    nonfinite_in_row: int = 0
    window_tokens: int = 0  # target tokens and summed NLL since the last train log line
    window_nll: float = 0.0
    elapsed: float = 0.0
    finished: bool = False
    stop_reason: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunData:
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    train: TokenizedCorpus
    train_indices: np.ndarray  # examples within the length limits
    valid: TokenizedCorpus
    valid_src: list[str]
    valid_ref: list[str]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _config_differences(old: Config, new: Config) -> list[str]:
    a, b = _flatten(old.to_dict()), _flatten(new.to_dict())
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return [k for k in keys if k not in RESUMABLE_KEYS and k.split(".")[0] not in RESUMABLE_KEYS]


def prepare_run_dir(run_dir: Path, config: Config, resume: bool) -> None:
    """Check the run directory against --resume and the config; write the resolved config."""
    if resume:
        if not (run_dir / CHECKPOINT_FILE).is_file():
            raise NMTError(f"nothing to resume: no {CHECKPOINT_FILE} in {run_dir}")
        differences = _config_differences(read_run_config(run_dir), config)
        if differences:
            raise NMTError(
                f"{run_dir} holds a run with a different config ({', '.join(differences[:5])}); "
                "resume with the same config or train into another --output-dir"
            )
    elif (run_dir / CHECKPOINT_FILE).exists() or (run_dir / WEIGHTS_FILE).exists():
        raise NMTError(f"{run_dir} already holds a training run: pass --resume to continue it or --output-dir DIR")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NMTError(f"cannot create run directory {run_dir}: {e.strerror}") from None
    for stale in run_dir.glob(".*.tmp"):  # left by a crash in the middle of an atomic write
        stale.unlink(missing_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, dump_config(config))


def _sentences(ds, columns: tuple[str, ...]) -> Iterator[str]:
    for batch in ds.iter(batch_size=1000):
        for column in columns:
            yield from batch[column]


def _tokenizers(run_dir: Path, config: Config, train_ds) -> tuple[Tokenizer, Tokenizer]:
    src_path, tgt_path = tokenizer_files(run_dir, config)
    if config.tokenizer.joint:
        tok = Tokenizer.load(src_path) if src_path.is_file() else None
        tok = tok or train_sentencepiece(_sentences(train_ds, ("src", "tgt")), src_path, config.tokenizer)
        return tok, tok
    src = Tokenizer.load(src_path) if src_path.is_file() else None
    src = src or train_sentencepiece(_sentences(train_ds, ("src",)), src_path, config.tokenizer)
    tgt = Tokenizer.load(tgt_path) if tgt_path.is_file() else None
    tgt = tgt or train_sentencepiece(_sentences(train_ds, ("tgt",)), tgt_path, config.tokenizer)
    return src, tgt


def load_run_data(run_dir: Path, config: Config) -> RunData:
    """Load train and validation splits, train (or reload) SentencePiece, tokenize, filter by length."""
    data = config.data
    train_ds = load_split(data, data.train_split)
    if data.max_train_examples and data.max_train_examples < len(train_ds):
        train_ds = train_ds.select(range(data.max_train_examples))
    valid_ds = load_split(data, data.valid_split)
    if data.max_valid_examples and data.max_valid_examples < len(valid_ds):
        valid_ds = valid_ds.select(range(data.max_valid_examples))
    src_tok, tgt_tok = _tokenizers(run_dir, config, train_ds)
    key = f"{src_tok.sp.serialized_model_proto().__hash__()}:{tgt_tok.sp.serialized_model_proto().__hash__()}"
    train = tokenize(train_ds, src_tok, tgt_tok, key)
    keep = (train.src_lengths <= data.max_src_len) & (train.tgt_lengths <= data.max_tgt_len)
    keep &= train.tgt_lengths > 0
    indices = np.flatnonzero(keep)
    if len(indices) == 0:
        raise NMTError("no training pairs left after length filtering (data.max_src_len / data.max_tgt_len)")
    valid = tokenize(valid_ds, src_tok, tgt_tok, key)
    return RunData(src_tok, tgt_tok, train, indices, valid, list(valid_ds["src"]), list(valid_ds["tgt"]))


def check_disk_space(run_dir: Path, parameters: int) -> None:
    """Fail before training when the disk cannot hold the checkpoints (weights, and weights plus Adam moments,
    each written beside its predecessor during an atomic replace)."""
    needed = parameters * 4 * (1 + 3) * 2
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise NMTError(
            f"not enough free disk space in {run_dir}: {free / 2**20:.0f} MiB free, "
            f"checkpoints need about {needed / 2**20:.0f} MiB"
        )


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most `max_norm`; returns the norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm else float("inf"))


def learning_rate(config: Config, state: TrainState, progress: float = 0.0) -> float:
    """The LR for the next step; `progress` is the fraction of the training budget used (cosine schedule)."""
    cfg = config.train
    warmup = cfg.warmup_steps
    factor = min(1.0, (state.step + 1) / warmup) if warmup else 1.0
    if cfg.lr_schedule == "cosine":
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        return (cfg.min_lr + (cfg.lr - cfg.min_lr) * cosine) * factor
    return max(cfg.lr * state.lr_scale, cfg.min_lr) * factor


def budget_progress(config: Config, state: TrainState, batches_in_epoch: int) -> float:
    """Fraction of the training budget used: the largest of the epoch, step and wall-clock fractions."""
    cfg = config.train
    fractions = [(state.epoch + state.batch_in_epoch / max(batches_in_epoch, 1)) / cfg.max_epochs]
    if cfg.max_steps:
        fractions.append(state.step / cfg.max_steps)
    if cfg.max_minutes:
        fractions.append(state.elapsed / (cfg.max_minutes * 60))
    return max(fractions)


def validation_loss(model: Seq2Seq, corpus: TokenizedCorpus, batch_tokens: int, device: torch.device) -> float:
    """Mean per-token NLL (no label smoothing) over a corpus."""
    model.eval()
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for idx in make_batches(corpus.src_lengths, corpus.tgt_lengths, np.arange(len(corpus)), batch_tokens, False):
            batch = collate(corpus, idx).to(device)
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
            total += float(sequence_loss(logits, batch.tgt_out)[1])
            tokens += batch.n_tokens
    model.train()
    return total / max(tokens, 1)


class Run:
    """One training run in one run directory (fresh or resumed)."""

    def __init__(self, config: Config, run_dir: Path, resume: bool = False, show_progress: bool = True):
        self.config, self.run_dir = config, run_dir
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        device = resolve_device(config.train.device)
        self.dist = Distributed.from_env(device)
        self.device = self.dist.device(device)
        self.show_progress = show_progress and self.dist.is_main
        if self.dist.is_main:  # the main process writes the run directory and trains SentencePiece first
            prepare_run_dir(run_dir, config, resume)
            self.data = load_run_data(run_dir, config)
        self.dist.barrier()
        if not self.dist.is_main:
            self.data = load_run_data(run_dir, config)
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        vocab = (self.data.src_tokenizer.vocab_size, self.data.tgt_tokenizer.vocab_size)
        self.vocab = vocab
        self.model = Seq2Seq(config.model, *vocab).to(self.device)
        self.train_model: torch.nn.Module = self.model
        if self.dist.world > 1:
            torch.manual_seed(config.seed + self.dist.rank)  # same initial weights, different dropout
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model)
        self.params = list(self.model.parameters())
        if self.dist.is_main:
            check_disk_space(run_dir, count_parameters(self.model))
        self.optimizer = torch.optim.Adam(self.params, lr=config.train.lr, weight_decay=config.train.weight_decay)
        self.translator = Translator(self.model, self.data.src_tokenizer, self.data.tgt_tokenizer, config)
        self.state = TrainState()
        self._batches_in_epoch = 1  # of the epoch being trained, for the cosine schedule's progress
        if resume:
            self._load_checkpoint()
        self.log(
            f"run {run_dir}: {count_parameters(self.model):,} parameters, vocab {vocab[0]}/{vocab[1]}, "
            f"{len(self.data.train_indices):,} training pairs, device {self.device}"
        )

    # ----- bookkeeping -------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.dist.is_main:
            return
        if self.show_progress:
            tqdm.write(message, file=sys.stderr)
        with open(self.run_dir / "train.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def _save_checkpoint(self) -> None:
        rng = self.dist.gather(torch.get_rng_state())  # every process's dropout state, for an exact resume
        if not self.dist.is_main:
            return
        payload = {
            "format_version": FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": json.dumps(asdict(self.state)),
            "rng_torch": rng,
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        atomic_torch_save(self.run_dir / CHECKPOINT_FILE, payload)

    def _load_checkpoint(self) -> None:
        path = self.run_dir / CHECKPOINT_FILE
        payload = safe_torch_load(path)
        try:
            if payload.get("format_version") != FORMAT_VERSION:
                raise NMTError(f"{path} was written by an incompatible nmt version")
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.state = TrainState(**json.loads(payload["state"]))
            rng = payload["rng_torch"]
            if len(rng) == self.dist.world:  # else the process count changed: keep the fresh per-rank seeds
                torch.set_rng_state(rng[self.dist.rank])
            if payload["rng_cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(payload["rng_cuda"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise NMTError(f"cannot resume from {path}: {e.__class__.__name__}: {str(e)[:200]}") from None

    def _write_reports(self) -> None:
        if not self.dist.is_main:
            return
        lines = "".join(json.dumps(m) + "\n" for m in self.state.metrics)
        atomic_write_text(self.run_dir / METRICS_FILE, lines)
        plot_training_curve(self.state.metrics, self.run_dir / CURVE_FILE, self.config.name)
        write_metadata(
            self.run_dir,
            self.config,
            self.model,
            self.vocab,
            best_valid_bleu=self.state.best_bleu if self.state.best_bleu >= 0 else None,
            best_step=self.state.best_step,
            steps=self.state.step,
            epochs=self.state.epoch,
            training_seconds=round(self.state.elapsed, 1),
        )

    # ----- training ----------------------------------------------------------------------------------------------
    def target_tokens(self, indices: np.ndarray) -> int:
        """Target tokens (EOS included) of training examples `indices`."""
        return int(self.data.train.tgt_lengths[indices].sum()) + len(indices)

    def train_step(self, indices: np.ndarray) -> float | None:
        """One optimizer step on the global batch `indices` (this process takes its share); returns the global
        NLL sum, or None when the loss or gradient was not finite (then no process updates)."""
        cfg = self.config.train
        batch = collate(self.data.train, self.dist.shard(indices)).to(self.device)
        normalizer = {"sentences": len(indices), "tokens": self.target_tokens(indices), "none": 1}[cfg.normalization]
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda")
        with autocast:
            logits = self.train_model(batch.src, batch.src_lengths, batch.tgt_in, cfg.teacher_forcing)
        loss_sum, nll_sum = sequence_loss(logits, batch.tgt_out, cfg.label_smoothing)
        # Gradients are averaged over processes, so each divides by its share of the global normalizer.
        loss = loss_sum / (normalizer / self.dist.world)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(self.params, cfg.clip_norm)
        total_loss, total_nll = self.dist.sum([loss.item(), nll_sum.item()])
        if not (math.isfinite(total_loss) and torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        return total_nll

    def _validate(self) -> bool:
        """Validate (on the main process), record metrics, save best weights, adjust the LR; returns True when
        training should stop. Every process ends with the main process's state."""
        if self.dist.is_main:
            self._validate_main()
        self.state = self.dist.broadcast(self.state)
        cfg = self.config.train
        return bool(cfg.early_stopping_patience and self.state.stale >= cfg.early_stopping_patience)

    def _validate_main(self) -> None:
        cfg, st = self.config.train, self.state
        loss = validation_loss(self.model, self.data.valid, cfg.batch_tokens, self.device)
        hyps = self.translator.translate(self.data.valid_src, beam_size=cfg.valid_beam_size)
        score = bleu([h[0].text for h in hyps], self.data.valid_ref)
        improved = score > st.best_bleu
        if improved:
            st.best_bleu, st.best_step, st.plateau, st.stale = score, st.step, 0, 0
            atomic_torch_save(self.run_dir / WEIGHTS_FILE, weights_payload(self.model))
        else:
            st.plateau += 1
            st.stale += 1
            if cfg.lr_schedule == "plateau" and st.plateau > cfg.lr_patience:
                st.lr_scale *= cfg.lr_decay_factor
                st.plateau = 0
        st.elapsed = self._elapsed()
        st.metrics.append(
            {
                "type": "valid",
                "step": st.step,
                "epoch": st.epoch,
                "valid_loss": round(loss, 4),
                "valid_ppl": round(math.exp(min(loss, 50)), 2),
                "valid_bleu": round(score, 2),
                "lr": self._lr(),
                "elapsed": round(st.elapsed, 1),
            }
        )
        self.log(
            f"validation at step {st.step} (epoch {st.epoch}): loss {loss:.3f} ppl {math.exp(min(loss, 50)):.2f} "
            f"BLEU {score:.2f}{' (best)' if improved else ''}, {st.elapsed / 60:.1f} min"
        )

    def _lr(self) -> float:
        return learning_rate(self.config, self.state, budget_progress(self.config, self.state, self._batches_in_epoch))

    def _elapsed(self) -> float:
        return self._elapsed_base + time.perf_counter() - self._clock_start

    def _out_of_budget(self) -> str:
        cfg, st = self.config.train, self.state
        if cfg.max_steps and st.step >= cfg.max_steps:
            return f"reached train.max_steps={cfg.max_steps}"
        if cfg.max_minutes and self.dist.broadcast(self._elapsed() >= cfg.max_minutes * 60):
            return f"reached train.max_minutes={cfg.max_minutes}"
        return ""

    def train(self) -> TrainState:
        cfg, st, data = self.config.train, self.state, self.data
        if st.finished and st.stop_reason.startswith("early stopping"):
            self.log(f"run already finished ({st.stop_reason})")
            return st
        st.finished, st.stop_reason = False, ""  # a budget-limited run may continue under a larger budget
        self._clock_start, self._elapsed_base = time.perf_counter(), st.elapsed
        self.model.train()
        while st.epoch < cfg.max_epochs and not st.stop_reason:
            st.stop_reason = self._out_of_budget()
            if st.stop_reason:
                break
            batches = make_batches(
                data.train.src_lengths,
                data.train.tgt_lengths,
                data.train_indices,
                cfg.batch_tokens,
                shuffle=True,
                seed=self.config.seed * 1000 + st.epoch,
            )
            self._batches_in_epoch = len(batches)
            st.stop_reason = self._epoch(batches)
            if st.batch_in_epoch >= len(batches):
                st.epoch += 1
                st.batch_in_epoch = 0
                if not cfg.valid_every_steps and self._validate():
                    st.stop_reason = f"early stopping: no BLEU gain in {cfg.early_stopping_patience} validations"
                self._write_reports()
                self._save_checkpoint()
        if not st.stop_reason:
            st.stop_reason = f"reached train.max_epochs={cfg.max_epochs}"
        if st.step not in {m["step"] for m in st.metrics if m["type"] == "valid"}:
            self._validate()
        st.finished = True
        st.elapsed = self._elapsed()
        self._write_reports()
        self._save_checkpoint()
        self.log(f"training finished: {st.stop_reason}; best validation BLEU {st.best_bleu:.2f} at step {st.best_step}")
        return st

    def _epoch(self, batches: list[np.ndarray]) -> str:
        """Train through the rest of one epoch's batches; returns a stop reason, or '' at the epoch's end."""
        cfg, st = self.config.train, self.state
        bar = tqdm(
            total=len(batches),
            initial=st.batch_in_epoch,
            desc=f"epoch {st.epoch + 1}",
            unit="batch",
            disable=not self.show_progress,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        window_start, window_tokens_before = time.perf_counter(), st.window_tokens
        try:
            while st.batch_in_epoch < len(batches):
                indices = batches[st.batch_in_epoch]
                st.batch_in_epoch += 1
                if len(indices) < self.dist.world:  # too small to give every process a sentence
                    continue
                result = self.train_step(indices)
                st.step += 1
                if result is None:
                    st.nonfinite_in_row += 1
                    self.log(
                        f"step {st.step}: non-finite loss or gradient, step skipped ({st.nonfinite_in_row} in a row)"
                    )
                    if st.nonfinite_in_row >= cfg.max_nonfinite_steps:
                        raise NMTError(
                            f"training diverged: {st.nonfinite_in_row} non-finite steps in a row "
                            f"(train.max_nonfinite_steps); the last good checkpoint is kept in {self.run_dir}"
                        )
                else:
                    st.nonfinite_in_row = 0
                    st.window_tokens += self.target_tokens(indices)
                    st.window_nll += result
                st.elapsed = self._elapsed()
                bar.update(1)
                if st.step % cfg.log_every_steps == 0 and st.window_tokens:
                    speed = (st.window_tokens - window_tokens_before) / max(time.perf_counter() - window_start, 1e-9)
                    lr = self._lr()
                    loss = st.window_nll / st.window_tokens
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", lr=f"{lr:.2e}")
                    st.metrics.append(
                        {
                            "type": "train",
                            "step": st.step,
                            "epoch": st.epoch,
                            "train_loss": round(loss, 4),
                            "tokens_per_s": round(speed),
                            "lr": lr,
                            "elapsed": round(st.elapsed, 1),
                        }
                    )
                    st.window_tokens, st.window_nll = 0, 0.0
                    window_start, window_tokens_before = time.perf_counter(), 0
                if cfg.valid_every_steps and st.step % cfg.valid_every_steps == 0:
                    if self._validate():
                        return f"early stopping: no BLEU gain in {cfg.early_stopping_patience} validations"
                    self._write_reports()
                    self._save_checkpoint()
                elif st.step % cfg.checkpoint_every_steps == 0:
                    self._save_checkpoint()
                reason = self._out_of_budget()
                if reason:
                    return reason
        finally:
            bar.close()
        return ""


def train(config: Config, run_dir: str | Path, resume: bool = False, show_progress: bool = True) -> TrainState:
    """Train a model from `config` into `run_dir` (continuing its last checkpoint with `resume`).

    Under torchrun every process calls this; they train one model data-parallel and the main one writes files.
    """
    run = Run(config, Path(run_dir), resume, show_progress)
    try:
        return run.train()
    finally:
        run.dist.close()
