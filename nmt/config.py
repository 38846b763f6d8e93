"""Typed configuration: YAML validated into pydantic models; unknown or mistyped keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nmt.errors import NMTError

TrainPrecision = Literal["auto", "fp32", "bf16"]  # train.precision (what each means: nmt.precision)
SearchDtype = Literal["auto", "fp32", "bf16", "int8", "int8+bf16"]  # decode.dtype and --dtype


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CleanConfig(Section):
    """Filters on the training pairs before tokenization (`nmt.cleaning`); each is off unless set."""

    empty: bool = False  # a side empty or whitespace only
    same: bool = False  # source equal to target (surrounding whitespace aside)
    duplicates: bool = False  # a pair seen before (8-byte hashes, not strings)
    max_chars: int | None = Field(None, ge=1)  # a side longer than this many characters
    max_ratio: float | None = Field(None, ge=1.0)  # the longer side over the shorter one, in characters
    min_letters: float | None = Field(None, gt=0.0, le=1.0)  # a side's share of letters among its non-space chars
    language: bool = False  # a side that lingua detects in another language than its own
    language_candidates: list[str] = Field(default_factory=list)  # languages lingua may answer besides the pair's

    def enabled(self) -> bool:
        return any((self.empty, self.same, self.duplicates, self.language)) or any(
            v is not None for v in (self.max_chars, self.max_ratio, self.min_letters)
        )


class CorpusConfig(Section):
    """One training corpus of `data.corpora`: a local directory or a hub id, drawn from with `weight`."""

    path: str | None = None  # local directory, read as data.path is
    hub_id: str | None = None
    hub_config: str | None = None
    split: str | None = None  # default: data.train_split
    weight: float = Field(1.0, gt=0)  # share of each epoch: weight / the sum of the weights
    max_examples: int | None = Field(None, ge=1)  # only the first N pairs
    clean: CleanConfig | None = None  # default: data.clean

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("a corpus names exactly one of 'path' and 'hub_id'")
        return self


class DataConfig(Section):
    path: str | None = None  # local data directory (nmt.data: files, save_to_disk, a dataset repo); else NMT_DATA_DIR
    hub_id: str = "bentrevett/multi30k"
    hub_config: str | None = None  # the dataset's configuration name (wmt16: de-en)
    src_lang: str = "de"
    tgt_lang: str = "en"
    train_split: str = "train"
    valid_split: str = "val"
    test_split: str = "test_2016_flickr"
    max_src_len: int = Field(100, ge=1)  # subword tokens; longer training pairs are dropped
    max_tgt_len: int = Field(100, ge=1)
    max_train_examples: int | None = Field(None, ge=1)
    max_valid_examples: int | None = Field(None, ge=1)
    clean: CleanConfig = Field(default_factory=CleanConfig)  # the training split only
    corpora: list[CorpusConfig] = Field(default_factory=list)  # training corpora mixed by weight (else path/hub)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.corpora and self.max_train_examples is not None:
            raise ValueError("with 'corpora', limit each corpus with its 'max_examples' (not 'max_train_examples')")
        return self


class TokenizerConfig(Section):
    joint: bool = True  # one SentencePiece model for both languages
    vocab_size: int = Field(8000, ge=16)
    model_type: Literal["unigram", "bpe"] = "unigram"
    character_coverage: float = Field(1.0, gt=0.0, le=1.0)
    sample_size: int = Field(1_000_000, ge=100)  # sentences SentencePiece trains on, spread over the corpus
    workers: int | None = Field(None, ge=1)  # processes that tokenize the corpus; None: one per core


class ModelConfig(Section):
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    embedding_dim: int = Field(256, ge=1)
    hidden_size: int = Field(512, ge=1)  # the decoder's size, and the encoder's per direction unless set below
    encoder_hidden_size: int | None = Field(None, ge=1)  # per direction
    encoder_layers: int = Field(2, ge=1)
    decoder_layers: int = Field(2, ge=1)
    bidirectional: bool = True
    dropout: float = Field(0.3, ge=0.0, lt=1.0)  # between RNN layers and before the output layer
    embedding_dropout: float = Field(0.3, ge=0.0, lt=1.0)
    attention: Literal["none", "bahdanau", "luong"] = "none"
    luong_score: Literal["general", "dot"] = "general"
    input_feeding: bool = True  # luong: feed the previous attentional vector into the next step
    feed_context: bool = True  # the context vector enters every decoder step and the readout (Cho et al. 2014)
    context: Literal["final", "max", "mean"] = "final"  # the summary: top layer's final states, or pooled outputs
    bridge: Literal["linear", "zero", "copy"] = "linear"  # copy: the encoder's final states as they are
    init: Literal["default", "uniform"] = "default"  # default: PyTorch's, N(0, 1/dim) embeddings; uniform: all
    init_range: float = Field(0.1, gt=0)  # uniform: every parameter from U(-init_range, init_range) (OpenNMT-py)
    reverse_source: bool = False  # Sutskever et al. 2014
    readout_dim: int | None = Field(None, ge=1)  # default: embedding_dim when tied, else hidden_size
    tie_embeddings: bool = True  # target embedding = output projection
    tie_src_tgt_embeddings: bool = False  # needs a joint vocabulary

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.attention == "luong" and self.luong_score == "dot":
            enc_out = (self.encoder_hidden_size or self.hidden_size) * (2 if self.bidirectional else 1)
            if enc_out != self.hidden_size:
                raise ValueError("luong_score 'dot' needs encoder outputs of hidden_size (bidirectional: false)")
        if self.bridge == "copy":
            enc_out = (self.encoder_hidden_size or self.hidden_size) * (2 if self.bidirectional else 1)
            if enc_out != self.hidden_size or self.encoder_layers != self.decoder_layers:
                raise ValueError(
                    "bridge 'copy' needs encoder_layers equal to decoder_layers and encoder outputs of hidden_size"
                )
        if self.tie_embeddings and self.readout_dim not in (None, self.embedding_dim):
            raise ValueError("tie_embeddings needs readout_dim equal to embedding_dim")
        return self


class TrainConfig(Section):
    batch_tokens: int = Field(4000, ge=1)  # padded tokens per batch: rows x (longest of source and target + 1)
    max_epochs: int = Field(30, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_minutes: float | None = Field(None, gt=0)  # wall-clock budget for the run
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    lr_schedule: Literal["plateau", "cosine"] = "plateau"  # cosine: from lr down to min_lr over the run's budget
    lr_decay_factor: float = Field(0.5, gt=0, le=1)  # plateau: on a validation BLEU plateau
    lr_patience: int = Field(1, ge=0)
    min_lr: float = Field(1e-5, ge=0)
    clip_norm: float | None = Field(1.0, gt=0)  # global L2 norm
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    teacher_forcing: float = Field(1.0, ge=0, le=1)
    normalization: Literal["sentences", "tokens", "none"] = "sentences"
    early_stopping_patience: int | None = Field(5, ge=1)
    valid_every_steps: int | None = Field(None, ge=1)  # default: once per epoch
    checkpoint_every_steps: int = Field(200, ge=1)
    keep_checkpoints: int = Field(0, ge=0)  # weights of the newest N checkpoints kept in checkpoints/ (nmt average)
    valid_beam_size: int = Field(1, ge=1)
    max_nonfinite_steps: int = Field(5, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: TrainPrecision = "fp32"  # bf16: autocast, fp32 master weights; auto: bf16 where fast (nmt.precision)
    threads: int | None = Field(None, ge=1)
    log_every_steps: int = Field(50, ge=1)


class DecodeConfig(Section):
    beam_size: int = Field(5, ge=1)
    length_penalty: float = Field(0.6, ge=0)  # GNMT alpha; 0 ranks by raw log-probability
    max_length_ratio: float = Field(2.0, gt=0)  # max output tokens = ratio * source tokens + offset
    max_length_offset: int = Field(10, ge=0)
    batch_size: int | None = Field(None, ge=1)  # sentences per batch in translate/evaluate; None: batch_rows / beam
    batch_rows: int = Field(640, ge=1)  # hypotheses (sentences x beam) per batch when batch_size is not set

    def sentences_per_batch(self, beam_size: int) -> int:
        return self.batch_size or max(1, self.batch_rows // beam_size)

    max_beam_size: int = Field(16, ge=1)  # cap for server requests
    dtype: SearchDtype = "auto"  # search precision; auto: int8, bf16 or fp32 by what the machine has (nmt.precision)


class Config(Section):
    name: str = "nmt"
    seed: int = 1
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.model.tie_src_tgt_embeddings and not self.tokenizer.joint:
            raise ValueError("model.tie_src_tgt_embeddings needs tokenizer.joint: true")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    return f"invalid value for '{key}': {first['msg']}"


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `KEY=VALUE` overrides (dotted key, YAML value) to a raw config dict."""
    for item in overrides:
        if "=" not in item:
            raise NMTError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise NMTError(f"--set {key}: '{part}' is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise NMTError(f"--set {key}: value is not valid YAML ({e.__class__.__name__})") from None
    return raw


def config_from_dict(raw: Any, source: str) -> Config:
    if not isinstance(raw, dict):
        raise NMTError(f"{source}: the config must be a YAML mapping")
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise NMTError(f"{source}: {_describe(e)}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NMTError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NMTError(f"cannot read config {path}: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise NMTError(f"{path}: not valid YAML{where}") from None
    return raw if raw is not None else {}


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `--set` overrides, validate; errors name the key and the file."""
    raw = apply_overrides(read_yaml(path), overrides or [])
    return config_from_dict(raw, str(path))


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
