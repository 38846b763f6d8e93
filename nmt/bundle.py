"""The run directory is the model bundle: resolved config, SentencePiece model(s), weights, metadata."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nmt import __version__
from nmt.config import Config, config_from_dict
from nmt.errors import NMTError
from nmt.files import atomic_write_json, safe_torch_load
from nmt.tokenizer import Tokenizer

if TYPE_CHECKING:  # torch loads lazily: reading a config or metadata must stay cheap (the server's HTTP process)
    import torch

    from nmt.model import Seq2Seq

FORMAT_VERSION = 1
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pt"  # best weights: what translation loads
CHECKPOINT_FILE = "last.pt"  # full training state: what --resume loads
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"


def tokenizer_files(run_dir: Path, config: Config) -> tuple[Path, Path]:
    if config.tokenizer.joint:
        return run_dir / "spm.model", run_dir / "spm.model"
    return run_dir / f"spm.{config.data.src_lang}.model", run_dir / f"spm.{config.data.tgt_lang}.model"


def read_run_config(run_dir: Path) -> Config:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise NMTError(f"not a model directory (no {CONFIG_FILE}): {run_dir}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise NMTError(f"corrupt config file: {path}") from None
    return config_from_dict(raw, str(path))


def weights_payload(model: Seq2Seq) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "model": model.state_dict()}


def load_weights(model: Seq2Seq, path: Path) -> None:
    """Load a weights file (never arbitrary unpickling) into `model`; errors name the file."""
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or "model" not in payload:
        raise NMTError(f"cannot load {path}: not an nmt weights file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise NMTError(f"{path} has bundle format {version}; this nmt {__version__} reads format {FORMAT_VERSION}")
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise NMTError(f"{path} does not match the model in its config: {str(e).splitlines()[0][:200]}") from None


def write_metadata(run_dir: Path, config: Config, model: Seq2Seq, vocab: tuple[int, int], **extra: Any) -> None:
    import sacrebleu
    import sentencepiece
    import torch

    from nmt.model import count_parameters

    meta = {
        "format_version": FORMAT_VERSION,
        "nmt_version": __version__,
        "name": config.name,
        "src_lang": config.data.src_lang,
        "tgt_lang": config.data.tgt_lang,
        "architecture": {
            "cell": config.model.cell,
            "encoder_layers": config.model.encoder_layers,
            "decoder_layers": config.model.decoder_layers,
            "bidirectional": config.model.bidirectional,
            "hidden_size": config.model.hidden_size,
            "embedding_dim": config.model.embedding_dim,
            "attention": config.model.attention,
        },
        "src_vocab_size": vocab[0],
        "tgt_vocab_size": vocab[1],
        "parameters": count_parameters(model),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sentencepiece": sentencepiece.__version__,
            "sacrebleu": sacrebleu.__version__,
        },
        **extra,
    }
    atomic_write_json(run_dir / METADATA_FILE, meta)


def read_metadata(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NMTError(f"missing file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NMTError(f"corrupt metadata file: {path}") from None


def check_ensemble(run_dirs: list[Path]) -> None:
    """Raise unless the run directories can decode as one ensemble: one language pair, and byte-identical
    SentencePiece models on both sides (reads configs and tokenizer files only, no weights)."""
    first = run_dirs[0]
    first_config = read_run_config(first)
    first_pair = (first_config.data.src_lang, first_config.data.tgt_lang)
    first_files = tokenizer_files(first, first_config)
    for run_dir in run_dirs[1:]:
        config = read_run_config(run_dir)
        pair = (config.data.src_lang, config.data.tgt_lang)
        if pair != first_pair:
            raise NMTError(
                f"cannot ensemble {first} ({'->'.join(first_pair)}) and {run_dir} ({'->'.join(pair)}): "
                "different language pairs"
            )
        for side, mine, theirs in zip(("source", "target"), tokenizer_files(run_dir, config), first_files, strict=True):
            if _read_bytes(mine) != _read_bytes(theirs):
                raise NMTError(
                    f"cannot ensemble {first} and {run_dir}: their {side} vocabularies (SentencePiece models) differ; "
                    "ensembled models must share the tokenizer"
                )


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise NMTError(f"missing tokenizer model: {path}")
    return path.read_bytes()


@dataclass
class Bundle:
    config: Config
    model: Seq2Seq
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    metadata: dict[str, Any]


def load_bundle(run_dir: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load everything needed to translate from a run directory, in eval mode on `device`."""
    from nmt.model import Seq2Seq, skip_initialization

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NMTError(f"model directory not found: {run_dir}")
    config = read_run_config(run_dir)
    metadata = read_metadata(run_dir)
    src_path, tgt_path = tokenizer_files(run_dir, config)
    src_tok = Tokenizer.load(src_path)
    tgt_tok = src_tok if tgt_path == src_path else Tokenizer.load(tgt_path)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise NMTError(f"no trained weights in {run_dir} (missing {WEIGHTS_FILE}; did training finish a validation?)")
    with skip_initialization():
        model = Seq2Seq(config.model, src_tok.vocab_size, tgt_tok.vocab_size)
    load_weights(model, weights)
    model.to(device).eval()
    return Bundle(config, model, src_tok, tgt_tok, metadata)
