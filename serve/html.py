"""`format: html`: translate the text of an HTML fragment and nothing else, with a real parser (BeautifulSoup).

The fragment is parsed with Python's html.parser (through BeautifulSoup), which keeps what it is given: no
<html>/<body> is added. Text is translated in *runs*: consecutive text and inline elements (`<b>`, `<a>`, `<span>`,
...) between block boundaries, so that a sentence with inline markup is translated as one sentence. The words of a
sentence's translation are shared out over the text nodes it spans in proportion to their source length (a
heuristic: the model gives no word alignment), so inline markup stays inside the sentence it was in. `<script>`,
`<style>`, `<code>`, `<pre>`, `<textarea>` and comments are left as they are; so are attribute values. Text is
written back escaped (&, <, > and non-breaking spaces as entities): a translation can never become markup.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from bs4 import BeautifulSoup, NavigableString, ParserRejectedMarkup, Tag
from bs4.element import Comment, Declaration, Doctype, ProcessingInstruction
from bs4.formatter import HTMLFormatter

from serve.documents import Layout

UNTRANSLATED = frozenset(
    {"script", "style", "code", "pre", "textarea", "kbd", "samp", "var", "template", "svg", "math"}
)  # fmt: skip
INLINE = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "data", "del", "dfn", "em", "font", "i", "ins", "label", "mark", "q",
     "s", "small", "span", "strong", "sub", "sup", "time", "u"}
)  # fmt: skip
NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\xa0", "&nbsp;")


FORMATTER = HTMLFormatter(entity_substitution=_escape, void_element_close_prefix=None)


def _is_text(node: object) -> bool:
    return isinstance(node, NavigableString) and not isinstance(node, NOT_TEXT)


def _inline_only(node: object) -> bool:
    """Text, or an inline element that holds only text and inline elements (it can sit inside a sentence)."""
    if _is_text(node):
        return True
    if isinstance(node, Tag):
        return node.name in INLINE and all(_inline_only(child) for child in node.children)
    return False


def _texts(node: object) -> list[NavigableString]:
    if _is_text(node):
        return [node]
    return [t for child in node.children for t in _texts(child)] if isinstance(node, Tag) else []


def _runs(parent: Tag) -> list[list[NavigableString]]:
    """The text nodes of `parent`, grouped into runs that translate together, in document order."""
    runs: list[list[NavigableString]] = []
    current: list[NavigableString] = []
    for child in list(parent.children):
        if _inline_only(child):
            current += _texts(child)
            continue
        if current:
            runs.append(current)
            current = []
        if isinstance(child, Tag) and child.name not in UNTRANSLATED:
            runs += _runs(child)
    if current:
        runs.append(current)
    return [run for run in runs if "".join(run).strip()]


def text_runs(root: Tag) -> list[list[NavigableString]]:
    """The text runs under `root` (a soup from any parser, XHTML's included): what the HTML path translates."""
    return _runs(root)


@dataclass
class HtmlDocument:
    """A parsed fragment and its runs; `render` writes translated runs back into it."""

    soup: BeautifulSoup
    runs: list[list[NavigableString]]

    @property
    def texts(self) -> list[str]:
        """The plain text of each run (what is split into sentences)."""
        return ["".join(run) for run in self.runs]

    def render(self, translations: list[tuple[Layout, list[str], list[str]]]) -> str:
        """The fragment with each run translated: (layout, source sentences, translated sentences) per run."""
        for run, (layout, sources, translated) in zip(self.runs, translations, strict=True):
            for node, text in zip(run, share_out([str(t) for t in run], layout, sources, translated), strict=True):
                node.replace_with(NavigableString(text))
        return self.soup.decode(formatter=FORMATTER)


class MarkupError(ValueError):
    """The parser gave up on a fragment."""


MAX_DEPTH = 100  # nested elements: deeper fragments are refused (the walk over runs is recursive)


def _depth(soup: BeautifulSoup) -> int:
    deepest, stack = 0, [(soup, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack += [(child, depth + 1) for child in node.children if isinstance(child, Tag)]
    return deepest


def parse_html(fragment: str) -> HtmlDocument:
    """The fragment parsed, with its runs; MarkupError when it cannot be parsed or nests too deeply."""
    try:
        soup = BeautifulSoup(fragment, "html.parser")
    except ParserRejectedMarkup:
        raise MarkupError("cannot parse the HTML") from None
    if _depth(soup) > MAX_DEPTH:
        raise MarkupError(f"HTML nested deeper than {MAX_DEPTH} elements")
    return HtmlDocument(soup, _runs(soup))


def share_out(nodes: list[str], layout: Layout, sources: list[str], translated: list[str]) -> list[str]:
    """New text for each of a run's text nodes. Whitespace between sentences stays in the node it was in; each
    translated sentence is cut at spaces over the nodes its source spanned, in proportion to their characters."""
    flat = "".join(nodes)
    owner = [i for i, text in enumerate(nodes) for _ in text]  # the node of each character of the run
    out = [""] * len(nodes)
    position = 0
    for k, gap in enumerate(layout.gaps):
        for j in range(position, position + len(gap)):
            out[owner[j]] += flat[j]
        position += len(gap)
        if k < len(sources):
            end = position + len(sources[k])
            _place(out, owner[position:end], flat[position:end], translated[k])
            position = end
    return out


def _place(out: list[str], owners: list[int], source: str, translation: str) -> None:
    """Share `translation`'s words over the nodes in `owners` (one per source character): each node gets the words
    whose end falls nearest its share of the source's visible characters; the spaces the source had at each
    node's edges are kept (the translation's own spacing inside a node too)."""
    nodes = list(dict.fromkeys(owners))
    weights = [sum(1 for o, c in zip(owners, source, strict=True) if o == n and not c.isspace()) for n in nodes]
    words = re.findall(r"\S+\s*", translation.strip())
    ends = list(itertools.accumulate(len(w.rstrip()) for w in words))  # visible characters up to each word's end
    total, visible = sum(weights) or 1, ends[-1] if ends else 0
    start = cumulative = 0
    for n, weight in zip(nodes, weights, strict=True):
        cumulative += weight
        if n == nodes[-1]:
            end = len(words)
        else:
            goal = visible * cumulative / total
            end = max(start, min(range(len(words) + 1), key=lambda k: abs((ends[k - 1] if k else 0) - goal)))
        part = "".join(c for o, c in zip(owners, source, strict=True) if o == n)
        lead = " " if part[:1].isspace() and out[n][-1:] != " " else ""
        trail = " " if part[-1:].isspace() and n != nodes[-1] else ""
        out[n] += lead + "".join(words[start:end]).rstrip() + trail
        start = end
