#!/usr/bin/env bash
# The server before (OLD: a checkout of 194c6b5, the day's start) and after the day's search changes, alternating:
# `nmt bench soak --model E --concurrency 64 --duration 60` (bf16, the default; beam 5, one sentence per request).
# Usage: OLD=/tmp/wt_old E=/tmp/r19/E bash docs/results/search_2026-11-29/soak_ab.sh   (nothing else running)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
for round in 1 2; do
  # the old checkout's nmt comes first on sys.path when run from its folder (the server inherits the folder)
  (cd "$OLD" && python -m nmt bench soak --model "$E" --concurrency 64 --duration 60 --json "$HERE/soak_old_$round.json" > /dev/null 2>&1)
  python -m nmt bench soak --model "$E" --concurrency 64 --duration 60 --json "$HERE/soak_new_$round.json" > /dev/null 2>&1
done
for f in "$HERE"/soak_*_*.json; do
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], {k: d[k] for k in d if 'per_s' in k or 'error' in k or 'latency' in k})" "$f"
done
