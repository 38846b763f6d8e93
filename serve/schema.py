"""Request and response schema of POST /predict, validated in the HTTP process before any batching.

The limits are configured once per server (`set_limits`) before the HTTP processes are forked, so a bad request
is answered 422 on its own and never reaches an inference worker, where one exception would fail a whole batch.
"""

import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

MAX_LENGTH_CAP = 1000  # max_length only lowers the source-based output limit; the cap just rejects absurd values


@dataclass(frozen=True)
class Limits:
    """Per-server request limits (set from `nmt serve` options)."""

    max_chars: int = 1000  # characters per text
    max_texts: int = 64  # texts per request
    max_beam_size: int = 16
    default_beam_size: int = 5  # the model config's decode.beam_size

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


_limits = Limits()


def set_limits(limits: Limits) -> None:
    """Install the limits every request is validated against (call before the server starts)."""
    global _limits
    _limits = limits


def current_limits() -> Limits:
    return _limits


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
    props["text"]["description"] = f"one sentence (at most {_limits.max_chars} characters)"
    props["texts"]["description"] = (
        f"1 to {_limits.max_texts} sentences, each at most {_limits.max_chars} characters; answered in order"
    )
    beam = min(5, _limits.max_beam_size)
    schema["examples"] = [
        {"text": "Ein Mann fährt Fahrrad."},
        {"texts": ["Zwei Hunde spielen im Schnee.", "Ein Kind lacht."], "beam_size": beam, "n_best": min(2, beam)},
    ]
    props["beam_size"]["description"] = (
        f"1 (greedy) to {_limits.max_beam_size}; default {_limits.default_beam_size} (the model's config)"
    )


class TranslationRequest(BaseModel):
    """Exactly one of `text` or `texts`, plus optional decoding options."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_limits)

    text: StrictStr | None = None
    texts: list[StrictStr] | None = Field(None, min_length=1)
    beam_size: StrictInt | None = Field(None, ge=1)
    n_best: StrictInt | None = Field(
        None, ge=1, description="return an n_best list of this many hypotheses per sentence, 1 to beam_size"
    )
    max_length: StrictInt | None = Field(
        None, ge=1, le=MAX_LENGTH_CAP, description="most output tokens (default: from the source length)"
    )

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
        if self.beam_size is None:
            self.beam_size = _limits.default_beam_size  # resolved here, so workers get explicit options
        if self.n_best is not None and self.n_best > self.beam_size:
            raise ValueError(f"n_best {_shown(self.n_best)} is larger than the beam size {self.beam_size}")
        return self


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
