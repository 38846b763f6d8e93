"""A synthetic reversal task written as local parallel text files (languages 'src' and 'tgt')."""

from __future__ import annotations

import random
from pathlib import Path

LETTERS = "abcdefghijkl"

REVERSAL_CONFIG = """\
name: reversal
data: {src_lang: src, tgt_lang: tgt}
tokenizer: {vocab_size: 20, model_type: bpe}
model: {embedding_dim: 32, hidden_size: 64, encoder_layers: 1, decoder_layers: 1, dropout: 0.0,
        embedding_dropout: 0.0, attention: luong}
train: {batch_tokens: 600, max_epochs: 8, lr: 0.005, label_smoothing: 0.0, log_every_steps: 20}
decode: {beam_size: 2}
"""


def reversal_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        s = [rng.choice(LETTERS) for _ in range(rng.randint(3, 8))]
        src.append(" ".join(s))
        tgt.append(" ".join(reversed(s)))
    return src, tgt


def write_reversal_task(directory: Path, train: int = 3000) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", train, 0), ("val", 100, 1), ("test", 100, 2)):
        src, tgt = reversal_pairs(n, seed)
        (directory / f"{split}.src").write_text("\n".join(src) + "\n")
        (directory / f"{split}.tgt").write_text("\n".join(tgt) + "\n")
    (directory / "reversal.yaml").write_text(REVERSAL_CONFIG)
    return directory
