"""Whole documents: split a text into sentences for the search, and put the translations back in its layout.

A document is cut into lines (every line break is kept as written), each line into sentences with pysbd (a
rule-based sentence splitter with rules for many languages; English rules for a language it does not know), and a
sentence longer than `max_sentence_chars` into pieces at the best break inside it (a clause mark, else a space,
else anywhere). Everything between sentences (spaces, tabs, line breaks, blank lines) is kept as it is, so that
`Layout.join` gives back the document with each sentence replaced by its translation.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache

import pysbd
from pysbd.languages import LANGUAGE_CODES

LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
CLAUSE_BREAK = re.compile(r"[;:,\u2013\u2014)\]]\s+")  # a break after one of these is the most natural in a clause


_PYSBD = threading.Lock()  # a pysbd Segmenter keeps state between calls: two threads using one can lose sentences


@cache
def _segmenter(lang: str) -> pysbd.Segmenter:
    return pysbd.Segmenter(language=lang if lang in LANGUAGE_CODES else "en", clean=False)


@dataclass(frozen=True)
class Layout:
    """A document as alternating text: gaps[0] sentence[0] gaps[1] ... sentence[n-1] gaps[n]."""

    gaps: tuple[str, ...]  # one more than sentences; whitespace as written

    @property
    def sentences(self) -> int:
        return len(self.gaps) - 1

    def join(self, translations: list[str]) -> str:
        """The document with its sentences replaced by `translations` (in order), whitespace as in the source."""
        if len(translations) != self.sentences:
            raise ValueError(f"{len(translations)} translations for {self.sentences} sentences")
        parts = [self.gaps[0]]
        for text, gap in zip(translations, self.gaps[1:], strict=True):
            parts += [text, gap]
        return "".join(parts)


def _split_long(sentence: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut after a clause mark, else at a space, else anywhere."""
    pieces = []
    while len(sentence) > limit:
        window = sentence[: limit + 1]
        cut = max((m.end() for m in CLAUSE_BREAK.finditer(window) if m.end() <= limit), default=0)
        if cut < limit // 3:  # a clause break that early makes a tiny piece: prefer the last space
            space = window.rfind(" ")
            cut = space + 1 if space > 0 else limit
        pieces.append(sentence[:cut].rstrip())
        sentence = sentence[cut:].lstrip()
    return [p for p in pieces if p] + ([sentence] if sentence else [])


def _line_sentences(line: str, lang: str) -> list[str]:
    """The sentences of one line, each stripped, in order (pysbd keeps them as substrings with clean=False)."""
    found, position = [], 0
    with _PYSBD:  # the HTTP process splits in a thread pool (serve.service)
        segments = _segmenter(lang).segment(line)
    for segment in segments:
        sentence = segment.strip()
        at = line.find(sentence, position) if sentence else -1
        if at < 0:  # not a substring: keep the rest of the line as one sentence rather than lose text
            rest = line[position:].strip()
            return found + ([rest] if rest else [])
        found.append(sentence)
        position = at + len(sentence)
    return found


def split_document(text: str, lang: str, max_sentence_chars: int) -> tuple[list[str], Layout]:
    """The sentences of `text` (language `lang`, an ISO 639-1 code) and the layout that puts them back."""
    sentences: list[str] = []
    gaps: list[str] = []
    gap_start = position = 0
    for line_match in [*LINE_BREAK.finditer(text), None]:
        line_end = line_match.start() if line_match else len(text)
        line = text[position:line_end]
        cursor = 0
        for sentence in _line_sentences(line, lang) if line.strip() else []:
            start = line.find(sentence, cursor)
            for piece in _split_long(sentence, max_sentence_chars):
                piece_start = line.find(piece, start)
                gaps.append(text[gap_start : position + piece_start])
                sentences.append(piece)
                start = piece_start + len(piece)
                gap_start = position + start
            cursor = start
        position = line_match.end() if line_match else len(text)
    gaps.append(text[gap_start:])
    return sentences, Layout(tuple(gaps))
