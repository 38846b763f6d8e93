"""Request and response schema of POST /predict, validated in the HTTP process before any batching.

The limits are configured once per server (`set_limits`) before the HTTP processes are forked, so a bad request
is answered 422 on its own and never reaches an inference worker, where one exception would fail a whole batch.
"""

import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from nmt.config import DecodeConfig

MAX_LENGTH_CAP = 1000  # max_length only lowers the source-based output limit; the cap just rejects absurd values


DECODE_DEFAULTS = DecodeConfig()  # a model config's decode section without overrides


@dataclass(frozen=True)
class Limits:
    """Per-server request limits: the one home of their defaults (the `nmt serve` options read them here)."""

    max_chars: int = 5000  # characters per text: a document of any number of sentences
    max_texts: int = 64  # texts per request
    max_sentence_chars: int = 400  # a longer sentence is cut into pieces before the search
    max_beam_size: int = DECODE_DEFAULTS.max_beam_size  # --max-beam-size, else the models' decode.max_beam_size
    max_body_bytes: int = 1 << 20  # request body size, checked before the body is read
    timeout: float = 30.0  # seconds from queueing a request to its answer
    max_concurrency: int = 256  # open connections and requests per HTTP process before 503

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


_limits = Limits()


def set_limits(limits: Limits) -> None:
    """Install the limits every request is validated against (call before the server starts)."""
    global _limits
    _limits = limits


INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # control, format (zero-width, bidi marks) and space characters


def _blank(text: str) -> bool:
    """Only whitespace, control or invisible format characters: nothing the model could translate."""
    return all(c.isspace() or unicodedata.category(c) in INVISIBLE for c in text)  # stops at the first visible one


def _shown(n: int) -> str:
    """An integer from the request, in a message: in full up to 9 digits (a JSON integer may have thousands)."""
    digits = str(abs(n))
    return str(n) if len(digits) <= 9 else f"{'-' if n < 0 else ''}{digits[:9]}... ({len(digits)} digits)"


def _check_text(text: str, item: int | None = None) -> str:
    where = "" if item is None else f"item {item}: "
    if _blank(text):
        raise ValueError(f"{where}empty or only whitespace or invisible characters")
    if len(text) > _limits.max_chars:
        raise ValueError(f"{where}{len(text)} characters, over the limit of {_limits.max_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}not valid Unicode (a lone surrogate)") from None
    return text


def _document_limits(schema: dict[str, Any]) -> None:
    """Show the configured limits in /openapi.json (the schema is built lazily, after `set_limits`)."""
    props = schema["properties"]
    props["text"]["description"] = f"one text of any number of sentences (at most {_limits.max_chars} characters)"
    props["texts"]["description"] = (
        f"1 to {_limits.max_texts} texts, each at most {_limits.max_chars} characters; answered in order"
    )
    beam = min(5, _limits.max_beam_size)
    schema["examples"] = [
        {"text": "Ein Mann fährt Fahrrad."},
        {"texts": ["Zwei Hunde spielen im Schnee.", "Ein Kind lacht."], "beam_size": beam, "n_best": min(2, beam)},
    ]
    props["beam_size"]["description"] = (
        f"1 (greedy) to {_limits.max_beam_size}; default: the model's config (GET /info)"
    )
    for name in ("beam_size", "n_best"):  # both at most the server's largest beam (n_best also at most beam_size)
        for branch in props[name]["anyOf"]:
            if branch.get("type") == "integer":
                branch["maximum"] = _limits.max_beam_size


class TranslationRequest(BaseModel):
    """Exactly one of `text` or `texts`, plus optional decoding options and the model to use."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_limits)

    text: StrictStr | None = None
    texts: list[StrictStr] | None = Field(None, min_length=1)
    beam_size: StrictInt | None = Field(None, ge=1)
    n_best: StrictInt | None = Field(
        None, ge=1, description="return an n_best list of this many hypotheses per sentence, 1 to beam_size"
    )
    max_length: StrictInt | None = Field(
        None, ge=1, le=MAX_LENGTH_CAP, description="most output tokens per sentence (default: from its length)"
    )
    source: StrictStr | None = Field(None, max_length=64, description="source language code, to pick the model")
    target: StrictStr | None = Field(None, max_length=64, description="target language code, to pick the model")
    model: StrictStr | None = Field(None, max_length=256, description="model name (metadata) or pair, e.g. de-en")

    @field_validator("text")
    @classmethod
    def _text_ok(cls, text: str | None) -> str | None:
        return None if text is None else _check_text(text)

    @field_validator("texts")
    @classmethod
    def _texts_ok(cls, texts: list[str] | None) -> list[str] | None:
        if texts is None:
            return None
        if len(texts) > _limits.max_texts:
            raise ValueError(f"{len(texts)} texts, over the limit of {_limits.max_texts} per request")
        return [_check_text(t, i) for i, t in enumerate(texts)]

    @field_validator("beam_size")
    @classmethod
    def _beam_ok(cls, beam: int | None) -> int | None:
        if beam is not None and beam > _limits.max_beam_size:
            raise ValueError(f"{_shown(beam)} is over this server's maximum of {_limits.max_beam_size}")
        return beam

    @model_validator(mode="after")
    def _consistent(self) -> "TranslationRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        if self.n_best is not None and self.beam_size is not None and self.n_best > self.beam_size:
            raise ValueError(n_best_message(self.n_best, self.beam_size))
        return self  # a missing beam_size is the chosen model's (serve.routes), checked against n_best there


def n_best_message(n_best: int, beam_size: int) -> str:
    return f"n_best {_shown(n_best)} is larger than the beam size {beam_size}"


class Hypothesis(BaseModel):
    translation: str
    score: float = Field(description="length-normalized log-probability (higher is better)")


class TranslationResponse(BaseModel):
    """Answer to a `text` request."""

    translation: str
    score: float
    n_best: list[Hypothesis] | None = Field(None, description="only when n_best was given; best first")


class BatchTranslationResponse(BaseModel):
    """Answer to a `texts` request, in input order."""

    translations: list[str]
    scores: list[float]
    n_best: list[list[Hypothesis]] | None = Field(None, description="only when n_best was given; per text")
