"""What the HTTP routes share: the served models (one per language pair), the limits, language detection, and
`translate`, the one call from a route into the request path (serve.translation) and the workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from serve.auth import Keys
from serve.jsonbody import shown
from serve.languages import LanguageDetector, language_name
from serve.schema import Limits
from serve.translation import Hypotheses, Options, TextResult, Work, assemble, plan


@dataclass(frozen=True)
class Model:
    """One served model (or ensemble): the pair it translates (from its metadata) and what GET /info says."""

    name: str
    src_lang: str
    tgt_lang: str
    run_dirs: tuple[str, ...]  # one, or an ensemble's members
    default_beam_size: int
    info: dict[str, Any]

    @property
    def where(self) -> str:
        return ",".join(self.run_dirs)

    @property
    def pair(self) -> str:
        return f"{self.src_lang}-{self.tgt_lang}"


class PairError(ValueError):
    """No served model fits the request; the message names the pairs that are served."""


@dataclass
class Service:
    models: dict[str, Model]  # by pair, in the order given on the command line
    limits: Limits
    keys: Keys | None = None  # the server's key (--api-key) or keys file (--keys); None: no key needed
    submit: Callable[[Work], Awaitable[Hypotheses]] | None = None  # set when the routes are registered
    detector: LanguageDetector = field(init=False)

    def __post_init__(self) -> None:
        self.detector = LanguageDetector(self.languages)

    @property
    def pairs(self) -> str:
        return ", ".join(self.models)

    @property
    def languages(self) -> list[str]:
        """Every language served, as a source or a target, in order of appearance."""
        return list(dict.fromkeys(lang for m in self.models.values() for lang in (m.src_lang, m.tgt_lang)))

    def targets(self, source: str) -> list[str]:
        """What `source` translates into, sorted; itself included (text comes back as it is, as in LibreTranslate)."""
        return sorted({m.tgt_lang for m in self.models.values() if m.src_lang == source} | {source})

    def language_list(self) -> list[dict[str, Any]]:
        """GET /languages: every served language with its name and the targets it translates into."""
        return [{"code": c, "name": language_name(c), "targets": self.targets(c)} for c in self.languages]

    def find(self, source: str | None = None, target: str | None = None, model: str | None = None) -> Model:
        """The one model that fits the given source, target and model name or pair (each optional)."""
        found = [
            m
            for m in self.models.values()
            if (source is None or m.src_lang == source)
            and (target is None or m.tgt_lang == target)
            and (model is None or model in (m.name, m.pair))
        ]
        if len(found) == 1:
            return found[0]
        served = f"this server translates {self.pairs}"
        if not found:
            given = (("source", source), ("target", target), ("model", model))
            wanted = [f"{k} '{shown(v)}'" for k, v in given if v is not None]
            raise PairError(f"no model for {' and '.join(wanted)}: {served}")
        raise PairError(f"{len(found)} models fit: give 'source' and 'target' (or 'model'); {served}")

    async def translate(self, texts: list[str], model: Model, options: Options, html: bool = False) -> list[TextResult]:
        """Translate documents (or HTML fragments) with `model`: split, one search in a worker batch, reassembled."""
        # splitting and reassembly take up to a few tenths of a second for a long document: off the event loop
        request = await run_in_threadpool(
            plan, texts, model.pair, model.src_lang, options, self.limits.max_sentence_chars, html
        )
        hypotheses = await self.submit(request.work) if request.work.sentences else []
        return await run_in_threadpool(assemble, request, hypotheses)
