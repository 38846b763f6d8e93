"""The request path between an HTTP route and the batched search, the same for every route.

    validated request --plan()--> Plan (Work for a worker + how to rebuild each text) --worker--> hypotheses
                      --assemble()--> one TextResult per input text

`plan` is the one place where texts become sentences (documents split by serve.documents, HTML by serve.html);
`assemble` is the one place where the sentences' translations become answers. A cache or metrics hook in here.
The worker side (serve.worker) sees only `Work`: sentences, a model and decoding options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serve.documents import Layout, split_document
from serve.html import HtmlDocument, parse_html

Hypotheses = list[list[tuple[str, float]]]  # per sentence: (translation, score), best first


@dataclass(frozen=True)
class Options:
    """Decoding options of a request, resolved (no defaults left for the worker to fill in)."""

    beam_size: int
    n_best: int = 1  # hypotheses per sentence
    max_length: int | None = None


@dataclass(frozen=True)
class Work:
    """What an inference worker receives: sentences for one model (its pair) with one set of options."""

    pair: str  # "de-en": the key of a served model
    sentences: tuple[str, ...]
    options: Options

    @property
    def group(self) -> tuple[str, Options]:
        """Requests with the same group share one search in a batch."""
        return self.pair, self.options


@dataclass
class _Text:
    """How to rebuild one input text from the translations of its sentences."""

    runs: list[tuple[Layout, list[str]]]  # (layout, source sentences) per run; one run unless HTML
    html: HtmlDocument | None = None


@dataclass
class Plan:
    work: Work
    texts: list[_Text] = field(default_factory=list)


@dataclass(frozen=True)
class TextResult:
    """The translation of one input text: the best, then alternatives (for plain text only), with scores."""

    text: str
    score: float  # mean of its sentences' scores (0.0 for a text without sentences)
    alternatives: list[tuple[str, float]]  # the n_best - 1 next ones, best first (may repeat the best)
    sentences: int


def plan(
    texts: list[str], pair: str, source_lang: str, options: Options, max_sentence_chars: int, html: bool = False
) -> Plan:
    """Split `texts` (documents, or HTML fragments when `html`) into the sentences of one `Work`."""
    sentences: list[str] = []
    rebuild: list[_Text] = []
    for text in texts:
        document = parse_html(text) if html else None
        runs = []
        for run_text in document.texts if document is not None else [text]:
            run_sentences, layout = split_document(run_text, source_lang, max_sentence_chars)
            runs.append((layout, run_sentences))
            sentences += run_sentences
        rebuild.append(_Text(runs, document))
    return Plan(Work(pair, tuple(sentences), options), rebuild)


def assemble(plan: Plan, hypotheses: Hypotheses) -> list[TextResult]:
    """One result per input text of `plan`, from the worker's hypotheses for `plan.work.sentences` (in order)."""
    if len(hypotheses) != len(plan.work.sentences):
        raise ValueError(f"{len(hypotheses)} results for {len(plan.work.sentences)} sentences")
    results, offset = [], 0
    for text in plan.texts:
        count = sum(len(sources) for _, sources in text.runs)
        own = hypotheses[offset : offset + count]
        offset += count
        n_best = 1 if text.html is not None else max((len(h) for h in own), default=1)
        versions = []
        for k in range(n_best):
            chosen = [h[min(k, len(h) - 1)] for h in own]
            score = sum(s for _, s in chosen) / len(chosen) if chosen else 0.0
            versions.append((_rebuild(text, [t for t, _ in chosen]), score))
        (best, score), alternatives = versions[0], versions[1:]
        results.append(TextResult(best, score, alternatives, count))
    return results


def _rebuild(text: _Text, translations: list[str]) -> str:
    parts, offset = [], 0
    for layout, sources in text.runs:
        parts.append((layout, sources, translations[offset : offset + len(sources)]))
        offset += len(sources)
    if text.html is not None:
        return text.html.render(parts)
    (layout, _, translated) = parts[0]
    return layout.join(translated)
