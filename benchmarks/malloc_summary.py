"""Summarize ab.jsonl: per run, best wall seconds (or tokens/s) with glibc's thresholds and nmt's, the ratio, page
faults and peak RSS.

    python benchmarks/malloc_summary.py docs/results/malloc/ab.jsonl > docs/results/malloc/summary.md
"""

import json
import sys
from collections import defaultdict


def listed(values: list, fmt: str = "{}") -> str:
    return ", ".join(fmt.format(v) for v in values)


rows = [json.loads(line) for line in open(sys.argv[1])]
wall, faults, rss, tps = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
for r in rows:
    if "differ" in r:
        print("translations differ between the two settings")
    elif "bench" in r:
        tps[r["bench"], r["malloc"]].append(r["tokens_per_s"])
    else:
        wall[r["run"], r["malloc"]].append(r["wall_s"])
        faults[r["run"], r["malloc"]].append(r["minflt"])
        rss[r["run"], r["malloc"]].append(r["maxrss_mb"])
print("| run | glibc: best s (all) | nmt: best s (all) | speed-up | page faults glibc -> nmt | peak RSS MB |")
print("|---|---|---|---|---|---|")
for name in dict.fromkeys(k[0] for k in wall):
    g, n = wall[name, "glibc"], wall[name, "nmt"]
    print(
        f"| {name} | {min(g):.2f} ({listed(g, '{:.2f}')}) | {min(n):.2f} ({listed(n, '{:.2f}')}) "
        f"| {min(g) / min(n):.2f}x | {max(faults[name, 'glibc']):,} -> {max(faults[name, 'nmt']):,} "
        f"| {max(rss[name, 'glibc'])} -> {max(rss[name, 'nmt'])} |"
    )
print()
print("| nmt bench train (20 steps) | glibc tokens/s (all) | nmt tokens/s (all) | speed-up (best; each pair) |")
print("|---|---|---|---|")
for name in dict.fromkeys(k[0] for k in tps):
    g, n = tps[name, "glibc"], tps[name, "nmt"]
    pairs = listed([b / a for a, b in zip(g, n, strict=True)], "{:.2f}x")
    print(f"| {name} | {max(g):,} ({listed(g)}) | {max(n):,} ({listed(n)}) | {max(n) / max(g):.2f}x; {pairs} |")
