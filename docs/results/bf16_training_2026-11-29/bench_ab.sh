#!/bin/bash
# bf16 training speed before (OLD: a checkout of the commit before the fp32 attention softmax, e.g.
# `git worktree add /tmp/wt_head 29c24b7~1`) and after (this checkout), alternating twice:
#   OLD=/tmp/wt_head bash docs/results/bf16_training_2026-11-29/bench_ab.sh   (nothing else running)
# `python -m nmt` from a checkout's folder runs that checkout's code. Results: bench_{old,new}_N.json here, or in OUT;
# STEPS timed steps (default 16). Used again for the cell-by-cell decoder step (STEPS=20) and the dropout masks (45).
HERE=$(cd "$(dirname "$0")" && pwd); NEW=$(cd "$HERE/../../.." && pwd)
OUT=${OUT:-$HERE}; STEPS=${STEPS:-16}
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
for r in 1 2; do
  for side in old new; do
    w=$OLD; [ $side = new ] && w=$NEW
    (cd "$w" && "$NEW/.venv/bin/python" -m nmt bench train --config configs/peer_shape.yaml --set train.precision=bf16 \
      --steps $STEPS --warmup 3 --json "$OUT/bench_${side}_$r.json" > /dev/null 2>&1)
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], {k: d[k] for k in d if 'tokens_per_s' in k or 'fraction' in k})" "$OUT/bench_${side}_$r.json"
  done
done
