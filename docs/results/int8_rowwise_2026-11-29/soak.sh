#!/usr/bin/env bash
# The server in bf16 (the default before 2026-11-29's row-wise int8) and int8 (the default since, on CPUs with
# int8 dot products), alternating twice: `nmt bench soak --model E --concurrency 64 --duration 60` (beam 5, one
# sentence per request, `--threads 1`, the server's default). Usage, nothing else running:
#   E=/path/to/attention_run bash docs/results/int8_rowwise_2026-11-29/soak.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
for round in 1 2; do
  for dtype in bf16 int8; do
    python -m nmt bench soak --model "$E" --concurrency 64 --duration 60 --server-args "--threads 1 --dtype $dtype" \
      --json "$HERE/soak_${dtype}_$round.json" > /dev/null 2>&1
  done
done
for f in "$HERE"/soak_*_*.json; do
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], {k: d[k] for k in d if 'per_s' in k or 'error' in k or 'latency' in k or 'growth' in k})" "$f"
done
