"""What the HTTP routes share: the served models (one per language pair), the limits, language detection, and
`translate`, the one call from a route into the request path (serve.translation) and the workers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from serve.auth import Keys
from serve.jsonbody import shown
from serve.languages import LanguageDetector, language_name
from serve.schema import Limits
from serve.suggestions import SuggestionStore
from serve.translation import Hypotheses, Options, TextResult, Work, assemble, plan

if TYPE_CHECKING:
    from serve.filestore import FileStore


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


PIVOT = "en"  # the language that joins two models where no direct one is served


class PairError(ValueError):
    """No served model fits the request; the message names the pairs that are served."""


@dataclass
class Service:
    models: dict[str, Model]  # by pair, in the order given on the command line
    limits: Limits
    keys: Keys | None = None  # the server's key (--api-key) or keys file (--keys); None: no key needed
    suggestions: SuggestionStore | None = None  # POST /suggest's store (--suggestions DIR); None: off
    files: FileStore | None = None  # /translate_file's translated files (serve.file_routes); None: off
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

    def direct(self, source: str, target: str) -> Model | None:
        """The model that translates `source` into `target` itself, if one is served."""
        return next((m for m in self.models.values() if (m.src_lang, m.tgt_lang) == (source, target)), None)

    def route(self, source: str, target: str) -> tuple[Model, ...]:
        """The models a text goes through from `source` to `target`: none for the same language (the text is its
        own translation, as in LibreTranslate), one direct model, else two through English (a pivot: source ->
        en -> target), as LibreTranslate does. PairError when neither exists."""
        if source == target:
            return ()
        direct = self.direct(source, target)
        if direct is not None:
            return (direct,)
        first, second = self.direct(source, PIVOT), self.direct(PIVOT, target)
        if first is not None and second is not None:
            return first, second
        raise PairError(
            f"{language_name(target)} ({shown(target)}) is not available as a target language from "
            f"{language_name(source)} ({shown(source)}): no model for it, nor through English; this server "
            f"translates {self.pairs}"
        )

    def _through_english(self, source: str, target: str) -> bool:
        """Whether `source` reaches `target` only through English (no model of its own, both halves served)."""
        return (
            self.direct(source, target) is None
            and self.direct(source, PIVOT) is not None
            and self.direct(PIVOT, target) is not None
        )

    @cached_property
    def pivots(self) -> list[str]:
        """The pairs translated through English ("de-fr"), in the order of the served languages."""
        return [f"{s}-{t}" for s in self.languages for t in self.languages if s != t and self._through_english(s, t)]

    def targets(self, source: str) -> list[str]:
        """What `source` translates into, directly or through English, sorted; itself included (text comes back as
        it is, as in LibreTranslate)."""
        return sorted(
            t
            for t in self.languages
            if t == source or self.direct(source, t) is not None or self._through_english(source, t)
        )

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

    async def translate_route(
        self, texts: list[str], route: tuple[Model, ...], options: Options, html: bool = False
    ) -> list[TextResult]:
        """Translate `texts` along `route` (Service.route): through a pivot, the first model's best translation
        (its default beam) is the second's input, and `options` (n-best, alternatives) apply to the second; each
        search is batched with the other requests. A result counts the sentences of both searches."""
        if not route:
            return [TextResult(text, 0.0, [], 0) for text in texts]
        *legs, last = route
        sentences = [0] * len(texts)
        for model in legs:
            found = await self.translate(texts, model, Options(model.default_beam_size), html)
            texts = [r.text for r in found]
            sentences = [n + r.sentences for n, r in zip(sentences, found, strict=True)]
        results = await self.translate(texts, last, options, html)
        return [replace(r, sentences=r.sentences + n) for r, n in zip(results, sentences, strict=True)]

    async def translate(self, texts: list[str], model: Model, options: Options, html: bool = False) -> list[TextResult]:
        """Translate documents (or HTML fragments) with `model`: split, one search in a worker batch, reassembled."""
        # splitting and reassembly take up to a few tenths of a second for a long document: off the event loop
        request = await run_in_threadpool(
            plan, texts, model.pair, model.src_lang, options, self.limits.max_sentence_chars, html
        )
        hypotheses = await self.submit(request.work) if request.work.sentences else []
        return await run_in_threadpool(assemble, request, hypotheses)
