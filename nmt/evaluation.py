"""Corpus scores with sacreBLEU: BLEU, chrF and TER, each with its signature."""

from __future__ import annotations

from typing import Any

from nmt.errors import NMTError


def corpus_scores(hypotheses: list[str], references: list[str], lowercase: bool = False) -> dict[str, Any]:
    from sacrebleu.metrics import BLEU, CHRF, TER

    if len(hypotheses) != len(references):
        raise NMTError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    scores: dict[str, Any] = {}
    for name, metric in (
        ("bleu", BLEU(lowercase=lowercase)),
        ("chrf", CHRF(lowercase=lowercase)),
        ("ter", TER(case_sensitive=not lowercase)),
    ):
        result = metric.corpus_score(hypotheses, [references])
        scores[name] = {"score": round(result.score, 2), "signature": str(metric.get_signature()), "text": str(result)}
    return scores


def bleu(hypotheses: list[str], references: list[str], lowercase: bool = False) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU(lowercase=lowercase).corpus_score(hypotheses, [references]).score
