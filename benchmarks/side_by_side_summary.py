"""Best and median of the rounds, as ratios to OpenNMT-py's best and median.

    python benchmarks/side_by_side_summary.py OUT_DIR > OUT_DIR/summary.txt

OUT_DIR: the folder side_by_side_translate.sh wrote.
"""

import collections
import glob
import json
import statistics
import sys
from pathlib import Path

folder = Path(sys.argv[1])

onmt = [json.loads(line) for line in open(folder / "onmt_translate.jsonl")]
best = {b: max(d["sents_per_s_wall"] for d in onmt if d["beam"] == b) for b in (5, 1)}
median = {b: statistics.median(d["sents_per_s_wall"] for d in onmt if d["beam"] == b) for b in (5, 1)}
print(f"OpenNMT-py: best {best}, median {median} (sentences/s by beam)")
rows = collections.defaultdict(list)
for path in sorted(glob.glob(str(folder / "nmt_*_round*.jsonl"))):
    for line in open(path):
        d = json.loads(line)
        rows[(d["model"], d["dtype"], d["beam"])].append(d)
for (model, dtype, beam), runs in rows.items():
    speeds = [d["sents_per_s_wall"] for d in runs]
    mid = statistics.median(speeds)
    print(
        f"{model} {dtype} beam {beam}: {speeds}; best {max(speeds):.1f} ({max(speeds) / best[beam]:.2f}x), "
        f"median {mid:.1f} ({mid / median[beam]:.2f}x); BLEU {runs[0]['bleu']}"
    )
