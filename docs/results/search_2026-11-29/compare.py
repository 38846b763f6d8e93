"""python compare.py BEFORE.json AFTER.json REFERENCE: per model, precision and beam, how many texts differ, the
largest score difference, and BLEU before and after."""

import json
import sys

import sacrebleu

before, after = (json.load(open(p)) for p in sys.argv[1:3])
ref = open(sys.argv[3]).read().splitlines()
for key in before:
    a, b = before[key], after[key]
    texts = sum(x[0] != y[0] for x, y in zip(a, b, strict=True))
    score = max(abs(x[1] - y[1]) for x, y in zip(a, b, strict=True))
    bleu = [round(sacrebleu.corpus_bleu([x[0] for x in h], [ref]).score, 2) for h in (a, b)]
    print(f"{key}: {texts} texts differ, largest score difference {score:.2e}, BLEU {bleu[0]} -> {bleu[1]}")
