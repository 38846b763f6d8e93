"""The languages a server translates: names for GET /languages, and detection of the source language (lingua).

Detection (`source: auto`, POST /detect) uses lingua, restricted to the languages of the served models (sources
and targets), so that it never answers a language the server cannot name. Languages that lingua does not know
(a model trained on made-up codes) are never detected; with fewer than two known languages the only one is
answered with full confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder


def _lingua(code: str) -> Language | None:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except (ValueError, AttributeError):
        return None


# LibreTranslate's own codes for three languages it names by region or script (its language.py): pt-BR is pb,
# zh-Hans zh and zh-Hant zt
LT_CODES = {"pt-br": "pb", "zh-hans": "zh", "zh-hant": "zt"}


def served_code(value: str, served: list[str]) -> str:
    """A client's language code as the served language it names: case and "_" or "-" do not matter, LibreTranslate's
    aliases (pt-BR, zh-Hans, zh-Hant) are its codes, and a regional or script variant of a served language is that
    language (en-US, de_AT, fr-CA: en, de, fr). Anything else comes back lower-cased, to be refused by name."""
    code = value.strip().lower().replace("_", "-")
    if code in served or code == "auto":
        return code
    for candidate in (LT_CODES.get(code), code.split("-", 1)[0]):
        if candidate in served:
            return candidate
    return code


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code ("de": "German"); the code itself when it is not one."""
    language = _lingua(code)
    return language.name.title() if language is not None else code


@dataclass(frozen=True)
class Detection:
    language: str
    confidence: float  # 0-100, as LibreTranslate gives it

    def to_dict(self) -> dict[str, float | str]:
        return {"confidence": self.confidence, "language": self.language}


class LanguageDetector:
    """Which of `codes` a text is in (lingua's confidence values, best first)."""

    def __init__(self, codes: list[str]):
        self.codes = list(dict.fromkeys(codes))
        self.known = {lang: code for code in self.codes if (lang := _lingua(code)) is not None}

    @cached_property
    def _detector(self):  # about 1 s for the models of two languages: see `load`
        return LanguageDetectorBuilder.from_languages(*self.known).with_preloaded_language_models().build()

    def load(self) -> None:
        """Load lingua's models now (in the main process, before the HTTP processes are forked from it)."""
        if len(self.known) >= 2:
            self._detector  # noqa: B018 (a cached property: evaluating it loads the models)

    def detect(self, text: str, candidates: int = 3) -> list[Detection]:
        """Up to `candidates` languages with confidence > 0, best first; the first served language with
        confidence 0 when nothing fits (digits, emoji, a language the server does not know)."""
        if len(self.known) < 2:
            only = next(iter(self.known.values()), self.codes[0])
            return [Detection(only, 100.0 if self.known else 0.0)]
        found = [
            Detection(self.known[value.language], round(100 * value.value, 1))
            for value in self._detector.compute_language_confidence_values(text)
            if value.value > 0
        ]
        return found[:candidates] or [Detection(self.codes[0], 0.0)]
