#!/usr/bin/env bash
# Each search precision's achieved GFLOP/s against its own peak (both measured in the same process) on the
# side-by-side's peer model, beam 5 and greedy. Run from anywhere, nothing else running:
#   bash docs/results/side_by_side_2026-11-29f/bench_translate.sh   (results: bench_translate/ here)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k}
mkdir -p "$HERE/bench_translate"
for dtype in int8 bf16 fp32; do for beam in 5 1; do
  nmt bench translate --model ${MODEL:-/tmp/peers/runs/nmt_peer} --dtype $dtype --beam-size $beam \
    --json "$HERE/bench_translate/$dtype.$beam.json" > /dev/null 2>&1
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], d['achieved_gflops'], d['peak_gflops'], d['fraction_of_peak'], d['bleu'])" "$HERE/bench_translate/$dtype.$beam.json"
done; done
