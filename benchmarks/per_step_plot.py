"""Per-step table and plot of the runs in /tmp/q (written by run.sh); copies their metrics here.

usage: python benchmarks/per_step_plot.py NAME=LABEL ...   (writes into docs/results/per_step/)
"""

import json
import math
import shutil
import sys
from pathlib import Path

from nmt.plot import plot_learning_curves

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "per_step"


def train_ppl(train: dict[int, dict], step: int) -> str:
    """Training perplexity over the 50 steps ending at `step` (five 10-step log windows)."""
    losses = [train[k]["train_loss"] for k in range(step - 40, step + 1, 10) if k in train]
    return f"{math.exp(sum(losses) / len(losses)):.1f}" if losses else "-"


runs = {}
for name, label in (arg.split("=", 1) for arg in sys.argv[1:]):
    src = Path(f"/tmp/q/{name}/metrics.jsonl")
    if not src.exists():
        continue
    shutil.copyfile(src, OUT / f"{name}.jsonl")
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    runs[label] = rows
    train = {m["step"]: m for m in rows if m["type"] == "train"}
    valid = {m["step"]: m for m in rows if m["type"] == "valid"}
    cells = [f"{train_ppl(train, s)} / {valid[s]['valid_ppl']:.1f}" if s in valid else "-" for s in (50, 100, 150, 200)]
    bleu = valid[max(valid)]["valid_bleu"] if valid else "-"
    print(f"| {label} | " + " | ".join(cells) + f" | {bleu} |")
plot_learning_curves(
    runs,
    OUT / "per_step_peer_shape.png",
    "peer_shape, Multi30k de-en",
    reference={
        "OpenNMT-py 3.5.1 (steps 151-200)": [(200, 46.0)],
        "OpenNMT-py 3.5.1, here (steps 1-10, 11-20)": [(10, 1241.9), (20, 323.1)],
    },
)
