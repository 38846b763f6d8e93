#!/usr/bin/env bash
# Each search precision's achieved GFLOP/s against its own matmul peak (both measured in the same process by
# `nmt bench translate`) on the side-by-side's peer model (MODEL, default /tmp/peers/runs/nmt_peer), beam 5 and
# greedy, in each of DTYPES (default "int8 bf16 fp32"). Nothing else running:
#   bash benchmarks/bench_translate.sh docs/results/side_by_side_epyc/bench_translate
set -u
OUT=$(realpath -m "${1:?usage: bench_translate.sh OUT_DIR}")
cd "$(dirname "$0")/.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-$(realpath ../shared/data/multi30k)}
mkdir -p "$OUT"
for dtype in ${DTYPES:-int8 bf16 fp32}; do for beam in 5 1; do
  nmt bench translate --model "${MODEL:-/tmp/peers/runs/nmt_peer}" --dtype $dtype --beam-size $beam \
    --json "$OUT/$dtype.$beam.json" > /dev/null 2>&1
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], d['achieved_gflops'], d['peak_gflops'], d['fraction_of_peak'], d['bleu'])" "$OUT/$dtype.$beam.json"
done; done
