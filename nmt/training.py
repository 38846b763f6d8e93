"""The training loop: token batches, Adam, LR schedule, clipping, validation, early stopping, exact resume."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmt.bundle import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE, read_run_config, tokenizer_files
from nmt.checkpoint import load_checkpoint, save_best_weights, save_checkpoint
from nmt.cleaning import clean_split
from nmt.config import Config, dump_config
from nmt.data import (
    Batch,
    Mixture,
    TokenizedCorpus,
    collate,
    corpus_name,
    load_corpus,
    load_split,
    make_batches,
    source_name,
)
from nmt.distributed import Distributed
from nmt.errors import NMTError
from nmt.evaluation import bleu
from nmt.files import atomic_write_text
from nmt.loss import sequence_loss
from nmt.model import Seq2Seq, count_parameters
from nmt.precision import autocast, describe, resolve_train_precision
from nmt.prediction import Translator, resolve_device
from nmt.reporting import Reporter
from nmt.rnn_loop import step_loop_speedup
from nmt.token_cache import cached_sentencepiece, cached_tokenize
from nmt.tokenizer import Tokenizer

# The fp32 decoder trains through the step loop where it measures at least this much faster than oneDNN's RNN,
# for RNNs of at least this many units: smaller ones come out on either side of 1.05 from one measurement to the
# next (0.87-1.2x on the Intel Xeon, 16-64 units), and two runs of one seed must take the same path.
STEP_LOOP_MIN_SPEEDUP = 1.05
STEP_LOOP_MIN_HIDDEN = 256
# Keys that may differ between a run directory's config and the config given to `--resume`.
RESUMABLE_KEYS = {
    "train.max_epochs",
    "train.max_steps",
    "train.max_minutes",
    "train.early_stopping_patience",
    "train.threads",
    "train.device",
    "train.precision",
    "train.log_every_steps",
    "train.checkpoint_every_steps",
    "train.keep_checkpoints",
    "tokenizer.workers",
    "data.path",
    "decode",
}


@dataclass
class TrainState:
    """Everything besides weights and optimizer that a resumed run needs to continue exactly.

    The training loop owns one instance and changes it only through these methods, with the same arguments on every
    process (values that only the main process knows, like validation BLEU and the clock, reach the others first),
    so every process holds the same state without ever replacing it.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    lr_scale: float = 1.0
    plateau: int = 0  # validations without improvement, for the LR decay
    stale: int = 0  # validations without improvement, for early stopping
    best_bleu: float = -1.0  # over every validation: the saved best weights
    best_step: int = 0
    # Over the scheduled validations only (epoch ends or valid_every_steps), which the LR decay and early stopping
    # compare with: the extra validation where a budget stops a run mid-epoch must not change the schedule of a run
    # resumed from it.
    scheduled_best: float = -1.0
    nonfinite_in_row: int = 0
    window_tokens: int = 0  # target tokens and summed NLL since the last train log line
    window_nll: float = 0.0
    elapsed: float = 0.0
    # What this machine measured at the start (training's "auto" precision, the fp32 decoder's step loop): a
    # resumed run keeps them, so that it continues exactly wherever a new measurement would come out otherwise.
    precision: str = ""
    fp32_step_loop: bool = False
    finished: bool = False
    stop_reason: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def restart(self) -> None:
        """Clear a budget stop: a run that ran out of budget may continue under a larger one."""
        self.finished, self.stop_reason = False, ""

    def next_batch(self, batches: list[np.ndarray]) -> np.ndarray:
        """The epoch's next batch; the position advances (a resumed run starts after the saved position)."""
        self.batch_in_epoch += 1
        return batches[self.batch_in_epoch - 1]

    def step_done(self, tokens: int, nll: float | None, elapsed: float) -> None:
        """An optimizer step on a batch of `tokens` target tokens (`nll` None: skipped, not finite)."""
        self.step += 1
        self.elapsed = elapsed
        if nll is None:
            self.nonfinite_in_row += 1
        else:
            self.nonfinite_in_row = 0
            self.window_tokens += tokens
            self.window_nll += nll

    def train_row(self, lr: float, tokens_per_s: float) -> dict[str, Any]:
        """Close the logging window into a `train` metrics row."""
        row = {
            "type": "train",
            "step": self.step,
            "epoch": self.epoch,
            "train_loss": round(self.window_nll / self.window_tokens, 4),
            "tokens_per_s": round(tokens_per_s),
            "lr": lr,
            "elapsed": round(self.elapsed, 1),
        }
        self.metrics.append(row)
        self.window_tokens, self.window_nll = 0, 0.0
        return row

    def validated(self, config: Config, loss: float, bleu: float, elapsed: float, scheduled: bool = True) -> bool:
        """Record a validation; returns True when it is the best so far. An unscheduled one (a budget's stop
        mid-epoch) leaves the LR decay and early stopping as they were."""
        cfg = config.train
        improved = bleu > self.best_bleu
        if improved:
            self.best_bleu, self.best_step = bleu, self.step
        if scheduled and bleu > self.scheduled_best:
            self.scheduled_best, self.plateau, self.stale = bleu, 0, 0
        elif scheduled:
            self.plateau += 1
            self.stale += 1
            if cfg.lr_schedule == "plateau" and self.plateau > cfg.lr_patience:
                self.lr_scale *= cfg.lr_decay_factor
                self.plateau = 0
        self.elapsed = elapsed
        return improved

    def epoch_done(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0

    def check_early_stop(self, config: Config) -> None:
        patience = config.train.early_stopping_patience
        if patience and self.stale >= patience:
            self.stop_reason = f"early stopping: no BLEU gain in {patience} validations"

    def check_budget(self, config: Config) -> bool:
        """Stop when the epochs, steps or minutes are spent; True when stopped."""
        self.stop_reason = self.stop_reason or out_of_budget(config, self)
        return bool(self.stop_reason)

    def finish(self, elapsed: float) -> None:
        self.finished, self.elapsed = True, elapsed


@dataclass
class RunData:
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    train: TokenizedCorpus
    train_indices: np.ndarray  # examples within the length limits
    valid: TokenizedCorpus
    valid_src: list[str]
    valid_ref: list[str]
    report: dict[str, Any] = field(default_factory=dict)  # what cleaning and length filtering kept (metadata.json)
    mixture: Mixture | None = None  # data.corpora: each epoch's examples are drawn from it, not train_indices

    def epoch_indices(self, seed: int, epoch: int) -> np.ndarray:
        """The training examples of an epoch: every usable pair once, or the corpora's weighted draw."""
        return self.mixture.epoch(seed, epoch) if self.mixture else self.train_indices


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


def prepare_data(config: Config, log: Callable[[str], None] | None = None) -> RunData:
    """`nmt prepare`: what a training start with `config` reads, cleans, trains and tokenizes, done ahead into the
    caches (`$NMT_CACHE_DIR`), so that `nmt train` with the same config starts from them. Under torchrun every
    process tokenizes shards of the training split."""
    import tempfile

    dist = Distributed.from_env(torch.device("cpu"))
    try:
        with tempfile.TemporaryDirectory(prefix="nmt-prepare-") as tmp:
            data = load_run_data(Path(tmp), config, log if dist.is_main else None, dist)
        dist.barrier()
        return data
    finally:
        dist.close()


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


def _tokenizers(run_dir: Path, config: Config, train_ds) -> tuple[Tokenizer, Tokenizer]:
    """The run's SentencePiece model(s): the run directory's, else from the cache, else trained."""
    src_path, tgt_path = tokenizer_files(run_dir, config)

    def get(path: Path, columns: tuple[str, ...]) -> Tokenizer:
        if path.is_file():
            return Tokenizer.load(path)
        return cached_sentencepiece(train_ds, columns, path, config.tokenizer)

    if config.tokenizer.joint:
        tok = get(src_path, ("src", "tgt"))
        return tok, tok
    return get(src_path, ("src",)), get(tgt_path, ("tgt",))


def _mixed_corpora(config: Config, log: Callable[[str], None] | None) -> tuple[Any, list[dict[str, Any]]]:
    """The corpora of `data.corpora`, each cleaned by its own settings (else data.clean), as one dataset whose
    fingerprint hashes theirs in order; and a report per corpus."""
    import datasets

    data, parts, reports = config.data, [], []
    for corpus in data.corpora:
        name = corpus_name(corpus, data)
        ds, cleaning = clean_split(
            load_corpus(corpus, data), corpus.clean or data.clean, data.src_lang, data.tgt_lang, log, name
        )
        parts.append(ds)
        reports.append({"source": name, "weight": corpus.weight, "pairs": len(ds)})
        if cleaning is not None:
            reports[-1]["cleaning"] = cleaning.to_dict()
    key = hashlib.sha256("\0".join(["nmt-corpora-v1", *(ds._fingerprint for ds in parts)]).encode()).hexdigest()
    mixed = datasets.concatenate_datasets(parts)
    return mixed.select(range(len(mixed)), new_fingerprint=key[:32]), reports


def load_run_data(
    run_dir: Path, config: Config, log: Callable[[str], None] | None = None, dist: Distributed | None = None
) -> RunData:
    """Load train and validation splits, clean the training split (`data.clean`), train (or reload) SentencePiece,
    tokenize (or open the tokenization cache), filter by length. With `data.corpora` the training split is their
    concatenation, drawn from by weight (`RunData.mixture`). Under torchrun (`dist`) the main process reads, cleans
    and trains SentencePiece first; then every process tokenizes shards of the training split."""
    first = dist is None or dist.is_main
    if not first:
        dist.barrier()  # the others then find the read split, the cleaning result and the tokenizers
    data = config.data
    where, langs = source_name(data), f"{data.src_lang}-{data.tgt_lang}"
    report: dict[str, Any] = {}
    corpora: list[dict[str, Any]] = []
    if data.corpora:
        train_ds, corpora = _mixed_corpora(config, log)
        train_source = "corpora:" + ",".join(c["source"] for c in corpora)
    else:
        train_ds = load_split(data, data.train_split)
        if data.max_train_examples and data.max_train_examples < len(train_ds):
            train_ds = train_ds.select(range(data.max_train_examples))
        train_source = f"{where}:{data.train_split}"
        train_ds, cleaning = clean_split(train_ds, data.clean, data.src_lang, data.tgt_lang, log, train_source)
        if cleaning is not None:
            report["cleaning"] = cleaning.to_dict()
    valid_ds = load_split(data, data.valid_split)
    if data.max_valid_examples and data.max_valid_examples < len(valid_ds):
        valid_ds = valid_ds.select(range(data.max_valid_examples))
    src_tok, tgt_tok = _tokenizers(run_dir, config, train_ds)
    if first and dist is not None:
        dist.barrier()
    workers = config.tokenizer.workers
    train, _ = cached_tokenize(train_ds, src_tok, tgt_tok, f"{train_source}:{langs}", log=log, workers=workers)
    keep = (train.src_lengths <= data.max_src_len) & (train.tgt_lengths <= data.max_tgt_len)
    keep &= train.tgt_lengths > 0
    indices = np.flatnonzero(keep)
    if len(indices) == 0:
        raise NMTError("no training pairs left after length filtering (data.max_src_len / data.max_tgt_len)")
    report |= {"train_pairs": len(train_ds), "length_filtered": len(train_ds) - len(indices)}
    mixture = None
    if corpora:
        bounds = np.cumsum([0] + [c["pairs"] for c in corpora])
        groups = [indices[(indices >= lo) & (indices < hi)] for lo, hi in itertools.pairwise(bounds)]
        for corpus, group in zip(corpora, groups, strict=True):
            if len(group) == 0:
                raise NMTError(f"no training pairs of {corpus['source']} left after length filtering")
        mixture = Mixture(groups, [c["weight"] for c in corpora])
        for corpus, group, count in zip(corpora, groups, mixture.counts(), strict=True):
            corpus |= {"usable": len(group), "per_epoch": count}
            if log:
                log(
                    f"corpus {corpus['source']}: {len(group):,} pairs within the length limits, weight "
                    f"{corpus['weight']:g}: {count:,} per epoch"
                )
        report["corpora"] = corpora
    valid, _ = cached_tokenize(
        valid_ds, src_tok, tgt_tok, f"{where}:{data.valid_split}:{langs}", log=log, workers=workers
    )
    valid_src, valid_ref = list(valid_ds["src"]), list(valid_ds["tgt"])
    return RunData(src_tok, tgt_tok, train, indices, valid, valid_src, valid_ref, report, mixture)


def check_disk_space(run_dir: Path, parameters: int, snapshots: int = 0) -> None:
    """Fail before training when the disk cannot hold the checkpoints (weights, and weights plus Adam moments,
    each written beside its predecessor during an atomic replace; `snapshots` kept weights plus one being written)."""
    needed = parameters * 4 * ((1 + 3) * 2 + (snapshots + 1 if snapshots else 0))
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise NMTError(
            f"not enough free disk space in {run_dir}: {free / 2**20:.0f} MiB free, "
            f"checkpoints need about {needed / 2**20:.0f} MiB"
        )


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most `max_norm`; returns the norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm else float("inf"), foreach=True)


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
    """What a training run works with: processes, device, data, model, optimizer, reporter. It holds no training
    state: the loop (`fit`) owns that and passes it in."""

    def __init__(self, config: Config, run_dir: Path, resume: bool = False, show_progress: bool = True):
        self.config, self.run_dir = config, run_dir
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        device = resolve_device(config.train.device)
        self.dist = Distributed.from_env(device)
        self.device = self.dist.device(device)
        # the main process measures what "auto" needs; every process then trains in its answer
        precision = resolve_train_precision(config.train.precision, self.device) if self.dist.is_main else None
        self.precision = self.dist.broadcast(precision)
        self.reporter = Reporter(run_dir, config, self.dist.is_main, show_progress)
        if self.dist.is_main:  # the main process writes the run directory and trains SentencePiece first
            prepare_run_dir(run_dir, config, resume)
        self.data = load_run_data(run_dir, config, self.reporter.log if self.dist.is_main else None, self.dist)
        self.dist.barrier()
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.vocab = (self.data.src_tokenizer.vocab_size, self.data.tgt_tokenizer.vocab_size)
        self.model = Seq2Seq(config.model, *self.vocab).to(self.device)
        self.train_model: torch.nn.Module = self.model
        if self.dist.world > 1:
            torch.manual_seed(config.seed + self.dist.rank)  # same initial weights, different dropout
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model)
        # the main process measures which way the fp32 decoder trains faster here; every process takes its answer
        step_loop = self.measure_step_loop() if self.dist.is_main else None
        self.model.decoder.fp32_step_loop = self.dist.broadcast(step_loop)
        self.params = list(self.model.parameters())
        if self.dist.is_main:
            check_disk_space(run_dir, count_parameters(self.model), config.train.keep_checkpoints)
        # fused: one pass over each parameter and its moments instead of about ten (38.6 -> 9.4 ms a step at the
        # peer shape on an Intel Xeon, 2.5% of the step; docs/performance.md)
        self.optimizer = torch.optim.Adam(
            self.params,
            lr=config.train.lr,
            weight_decay=config.train.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        self.translator = Translator(self.model, self.data.src_tokenizer, self.data.tgt_tokenizer, config)
        self.clock_start, self.clock_base = time.perf_counter(), 0.0
        self.reporter.log(
            f"run {run_dir}: {count_parameters(self.model):,} parameters, vocab {self.vocab[0]}/{self.vocab[1]}, "
            f"{len(self.data.train_indices):,} training pairs, device {self.device}, {self.dist.world} process(es), "
            f"{describe(self.precision, self.device)}"
        )

    def measure_step_loop(self) -> bool:
        """Whether the fp32 decoder trains faster through `TrainingRNN` than through oneDNN's one-step RNN here
        (only asked where it matters: CPU, fp32, a decoder run step by step); logged."""
        decoder = self.model.decoder
        if not (self.device.type == "cpu" and self.precision == "fp32" and decoder.stepwise):
            return False
        if decoder.rnn.hidden_size < STEP_LOOP_MIN_HIDDEN:
            return False
        speedup = step_loop_speedup(decoder.rnn)
        loop = speedup >= STEP_LOOP_MIN_SPEEDUP
        self.reporter.log(
            f"decoder RNN steps in fp32: {'the step loop' if loop else 'oneDNN'} (the loop measured at "
            f"{speedup:.2f}x oneDNN's one-step RNN here; taken from {STEP_LOOP_MIN_SPEEDUP}x)"
        )
        return loop

    def initial_state(self, resume: bool) -> TrainState:
        """A fresh state recording what this machine measured, or the checkpoint's, whose measurements win."""
        decoder = self.model.decoder
        if not resume:
            return TrainState(precision=self.precision, fp32_step_loop=decoder.fp32_step_loop)
        state = TrainState(**load_checkpoint(self.run_dir, self.model, self.optimizer, self.dist.rank, self.dist.world))
        if self.config.train.precision == "auto" and state.precision and state.precision != self.precision:
            self.reporter.log(f"resumed in the run's precision {state.precision} ('auto' measured {self.precision})")
            self.precision = state.precision
        if state.fp32_step_loop != decoder.fp32_step_loop:
            self.reporter.log(f"resumed with the run's fp32 decoder path (step loop: {state.fp32_step_loop})")
        decoder.fp32_step_loop = state.fp32_step_loop
        state.precision = self.precision
        return state

    def start_clock(self, elapsed: float) -> None:
        self.clock_start, self.clock_base = time.perf_counter(), elapsed

    def elapsed(self) -> float:
        """Training seconds so far (this process's clock; the main process's is the one the state records)."""
        return self.clock_base + time.perf_counter() - self.clock_start

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches: the same on every process, rebuilt identically on resume."""
        data, cfg = self.data, self.config.train
        return make_batches(
            data.train.src_lengths,
            data.train.tgt_lengths,
            data.epoch_indices(self.config.seed, epoch),
            cfg.batch_tokens,
            shuffle=True,
            seed=self.config.seed * 1000 + epoch,
        )

    def target_tokens(self, indices: np.ndarray) -> int:
        """Target tokens (EOS included) of training examples `indices`."""
        return int(self.data.train.tgt_lengths[indices].sum()) + len(indices)

    def forward_backward(self, batch: Batch, normalizer: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-batch work: forward, loss, backward (gradients accumulate in `.grad`). Returns this process's
        (normalized loss, NLL sum). Mixed precision wraps the forward here."""
        cfg = self.config.train
        with autocast(self.precision, self.device):
            logits = self.train_model(batch.src, batch.src_lengths, batch.tgt_in, cfg.teacher_forcing)
        # Gradients are averaged over processes, so each divides by its share of the global normalizer.
        loss, nll_sum = sequence_loss(logits, batch.tgt_out, cfg.label_smoothing, self.dist.world / normalizer)
        loss.backward()
        return loss.detach(), nll_sum.detach()

    def train_step(self, indices: np.ndarray, lr: float) -> tuple[float | None, float]:
        """One optimizer step at learning rate `lr` on the global batch `indices` (this process takes its share).

        Returns (the global NLL sum, or None when the loss or gradient was not finite and no process updated;
        the main process's clock), both the same on every process."""
        cfg = self.config.train
        batch = collate(self.data.train, self.dist.shard(indices)).to(self.device)
        normalizer = {"sentences": len(indices), "tokens": self.target_tokens(indices), "none": 1}[cfg.normalization]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss, nll = self.forward_backward(batch, normalizer)
        norm = clip_gradients(self.params, cfg.clip_norm)
        clock = self.elapsed() if self.dist.is_main else 0.0
        total_loss, total_nll, clock = self.dist.sum([loss.item(), nll.item(), clock])
        if not (math.isfinite(total_loss) and torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return None, clock
        self.optimizer.step()
        return total_nll, clock

    def validate(self, state: TrainState, batches_in_epoch: int, scheduled: bool = True) -> None:
        """Validation loss and BLEU (computed by the main process, sent to all), recorded in `state`; the best
        weights are saved; a scheduled validation may stop the run early. `scheduled`: False for the extra
        validation where a budget stops a run."""
        cfg = self.config.train
        result = None
        if self.dist.is_main:
            loss = validation_loss(self.model, self.data.valid, cfg.batch_tokens, self.device)
            hyps = self.translator.translate(self.data.valid_src, beam_size=cfg.valid_beam_size)
            result = (loss, bleu([h[0].text for h in hyps], self.data.valid_ref), self.elapsed())
        loss, score, elapsed = self.dist.broadcast(result)
        improved = state.validated(self.config, loss, score, elapsed, scheduled)
        if improved and self.dist.is_main:
            save_best_weights(self.run_dir, self.model)
        state.metrics.append(
            {
                "type": "valid",
                "step": state.step,
                "epoch": state.epoch,
                "valid_loss": round(loss, 4),
                "valid_ppl": round(math.exp(min(loss, 50)), 2),
                "valid_bleu": round(score, 2),
                "lr": self.learning_rate(state, batches_in_epoch),
                "elapsed": round(elapsed, 1),
            }
        )
        self.reporter.log(
            f"validation at step {state.step} (epoch {state.epoch}): loss {loss:.3f} "
            f"ppl {math.exp(min(loss, 50)):.2f} BLEU {score:.2f}{' (best)' if improved else ''}, {elapsed / 60:.1f} min"
        )
        if scheduled:
            state.check_early_stop(self.config)

    def learning_rate(self, state: TrainState, batches_in_epoch: int) -> float:
        """The learning rate of the next step (`batches_in_epoch`: of the current epoch, for its progress)."""
        return learning_rate(self.config, state, budget_progress(self.config, state, batches_in_epoch))

    def save(self, state: TrainState) -> None:
        """Reports, then the checkpoint (every process's RNG state gathered for an exact resume)."""
        self.reporter.write(
            state.metrics,
            self.model,
            self.vocab,
            best_valid_bleu=state.best_bleu if state.best_bleu >= 0 else None,
            best_step=state.best_step,
            steps=state.step,
            epochs=state.epoch,
            training_seconds=round(state.elapsed, 1),
            data=self.data.report,
        )
        self.checkpoint(state)

    def checkpoint(self, state: TrainState) -> None:
        rng = self.dist.gather(torch.get_rng_state())
        if self.dist.is_main:
            keep = self.config.train.keep_checkpoints
            save_checkpoint(self.run_dir, self.model, self.optimizer, asdict(state), rng, keep)

    def close(self) -> None:
        self.reporter.close()
        self.dist.close()


def out_of_budget(config: Config, state: TrainState) -> str:
    """Why training stops now ('' to go on): its epochs, steps or minutes are spent. The same on every process
    (the state's clock is the main process's)."""
    cfg = config.train
    if state.epoch >= cfg.max_epochs:
        return f"reached train.max_epochs={cfg.max_epochs}"
    if cfg.max_steps and state.step >= cfg.max_steps:
        return f"reached train.max_steps={cfg.max_steps}"
    if cfg.max_minutes and state.elapsed >= cfg.max_minutes * 60:
        return f"reached train.max_minutes={cfg.max_minutes}"
    return ""


def fit(run: Run, state: TrainState) -> TrainState:
    """The training loop, one batch per iteration; every process runs it with the same state."""
    cfg, log = run.config.train, run.reporter.log
    if state.finished and state.stop_reason.startswith("early stopping"):
        log(f"run already finished ({state.stop_reason})")
        return state
    state.restart()
    run.start_clock(state.elapsed)
    run.model.train()
    batches = run.epoch_batches(state.epoch)
    while not state.stop_reason:
        if state.batch_in_epoch >= len(batches):  # end of an epoch
            state.epoch_done()
            if not cfg.valid_every_steps:
                run.validate(state, len(batches))
            run.save(state)
            if not (state.stop_reason or out_of_budget(run.config, state)):
                batches = run.epoch_batches(state.epoch)
            continue
        if state.check_budget(run.config):
            break
        indices = state.next_batch(batches)
        if len(indices) < run.dist.world:  # too small to give every process a sentence
            continue
        lr = run.learning_rate(state, len(batches))
        nll, clock = run.train_step(indices, lr)
        state.step_done(run.target_tokens(indices), nll, clock)
        run.reporter.batch_done(state.epoch, state.batch_in_epoch, len(batches), run.target_tokens(indices))
        if nll is None:
            log(f"step {state.step}: non-finite loss or gradient, step skipped ({state.nonfinite_in_row} in a row)")
            if state.nonfinite_in_row >= cfg.max_nonfinite_steps:
                raise NMTError(
                    f"training diverged: {state.nonfinite_in_row} non-finite steps in a row "
                    f"(train.max_nonfinite_steps); the last good checkpoint is kept in {run.run_dir}"
                )
        if state.step % cfg.log_every_steps == 0 and state.window_tokens:
            row = state.train_row(run.learning_rate(state, len(batches)), run.reporter.tokens_per_s())
            run.reporter.train_line(row)
        if cfg.valid_every_steps and state.step % cfg.valid_every_steps == 0:
            run.validate(state, len(batches))
            run.save(state)
        elif state.step % cfg.checkpoint_every_steps == 0:
            run.checkpoint(state)
    if state.step not in {m["step"] for m in state.metrics if m["type"] == "valid"}:
        run.validate(state, len(batches), scheduled=False)
    state.finish(run.dist.broadcast(run.elapsed()))
    run.save(state)
    log(f"training finished: {state.stop_reason}; best validation BLEU {state.best_bleu:.2f} at step {state.best_step}")
    return state


def train(config: Config, run_dir: str | Path, resume: bool = False, show_progress: bool = True) -> TrainState:
    """Train a model from `config` into `run_dir` (continuing its last checkpoint with `resume`).

    Under torchrun every process calls this; they train one model data-parallel and the main one writes files.
    """
    run = Run(config, Path(run_dir), resume, show_progress)
    try:
        state = fit(run, run.initial_state(resume))
        run.dist.barrier()  # no process tears the process group down while another still talks to it
        return state
    finally:
        run.close()
