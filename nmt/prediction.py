"""Translation of raw text with a trained model: the one path used by translate, evaluate, validation and serving."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from nmt.bundle import Bundle, check_ensemble, load_bundle
from nmt.config import Config
from nmt.data import pad_sources
from nmt.model import Seq2Seq
from nmt.precision import autocast, describe, prepare_for_search, resolve_search_dtype, uses_autocast
from nmt.search import beam_search, greedy_search, max_output_lengths
from nmt.tokenizer import Tokenizer


@dataclass
class Translation:
    text: str
    score: float  # length-normalized log-probability (see nmt.search)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Translator:
    """Turns sentences into n-best translations in length-sorted batches, preserving input order."""

    def __init__(
        self,
        model: Seq2Seq,
        src_tokenizer: Tokenizer,
        tgt_tokenizer: Tokenizer,
        config: Config,
        dtype: str = "fp32",
    ):
        """`dtype` is a resolved search precision (`nmt.precision`); "auto" is resolved here for the model's device."""
        self.device = next(model.parameters()).device
        self.dtype = resolve_search_dtype(dtype, self.device)
        self.model = prepare_for_search(model, self.dtype)
        self.src_tokenizer = src_tokenizer
        self.tgt_tokenizer = tgt_tokenizer
        self.config = config

    @classmethod
    def from_bundle(cls, bundle: Bundle, dtype: str | None = None) -> Translator:
        """`dtype`: a search precision; None: the bundle config's `decode.dtype`."""
        dtype = dtype or bundle.config.decode.dtype
        return cls(bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer, bundle.config, dtype)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, device: str = "cpu", dtype: str | None = None) -> Translator:
        """The model of a run directory, searching in `dtype` (default: its config's decode.dtype)."""
        return cls.from_bundle(load_bundle(run_dir, resolve_device(device)), dtype)

    @property
    def precision(self) -> str:
        """Which precision this translator searches in, for logs and reports."""
        return describe(self.dtype, self.device)

    @classmethod
    def from_run_dirs(cls, run_dirs: list[str | Path], device: str = "cpu", dtype: str | None = None) -> Translator:
        """One model, or an ensemble of several sharing a vocabulary (decode settings: the first model's)."""
        from nmt.ensemble import Ensemble

        if len(run_dirs) == 1:
            return cls.from_run_dir(run_dirs[0], device, dtype=dtype)
        check_ensemble([Path(run_dir) for run_dir in run_dirs])
        bundles = [load_bundle(run_dir, resolve_device(device)) for run_dir in run_dirs]
        first = bundles[0]
        first.model = Ensemble([b.model for b in bundles])
        return cls.from_bundle(first, dtype)

    def search_options(self, beam_size: int | None, length_penalty: float | None) -> tuple[int, float]:
        """The beam size and length penalty a search runs with: the given ones, else the config's `decode` ones."""
        decode = self.config.decode
        return beam_size or decode.beam_size, decode.length_penalty if length_penalty is None else length_penalty

    def translate(
        self,
        texts: list[str],
        beam_size: int | None = None,
        n_best: int = 1,
        max_length: int | None = None,
        batch_size: int | None = None,
        progress: Callable[[int], object] | None = None,
        length_penalty: float | None = None,
    ) -> list[list[Translation]]:
        """n-best translations per input text, best first. Blank inputs give one empty translation. Options left
        None take the model config's `decode` value."""
        decode = self.config.decode
        beam_size, alpha = self.search_options(beam_size, length_penalty)
        batch_size = batch_size or decode.sentences_per_batch(beam_size)
        results: list[list[Translation]] = [[Translation("", 0.0)] for _ in texts]
        candidates = [i for i, t in enumerate(texts) if t.strip()]
        encoded = self.src_tokenizer.encode([texts[i] for i in candidates])
        # Text that encodes to no tokens (zero-width characters only, say) is blank too.
        todo = [i for i, ids in zip(candidates, encoded, strict=True) if ids]
        ids = [x for x in encoded if x]
        if progress is not None:
            progress(len(texts) - len(todo))
        if not todo:
            return results
        order = sorted(range(len(todo)), key=lambda j: len(ids[j]))
        was_training = self.model.training
        self.model.eval()
        # Under inference_mode autocast keeps no bf16 copies of the weights and casts each weight again at every step
        # (12% of a bf16 greedy search), so autocast searches run under no_grad; the others keep inference_mode.
        no_autograd = torch.no_grad() if uses_autocast(self.dtype) else torch.inference_mode()
        with no_autograd, autocast(self.dtype, self.device):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                src, lengths = pad_sources([ids[j] for j in chunk])
                src, lengths = src.to(self.device), lengths.to(self.device)
                limits = max_output_lengths(lengths, decode.max_length_ratio, decode.max_length_offset)
                if max_length is not None:
                    limits = limits.clamp(max=max_length + 1)
                if beam_size == 1:
                    hyps = greedy_search(self.model, src, lengths, limits, alpha)
                else:
                    hyps = beam_search(self.model, src, lengths, limits, beam_size, n_best, alpha)
                texts_out = iter(self.tgt_tokenizer.decode([h.tokens for sentence in hyps for h in sentence]))
                for j, sentence_hyps in zip(chunk, hyps, strict=True):
                    results[todo[j]] = [Translation(next(texts_out), h.score) for h in sentence_hyps]
                if progress is not None:
                    progress(len(chunk))
        self.model.train(was_training)
        return results
