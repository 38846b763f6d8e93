#!/bin/bash
# Training speed before (OLD: a checkout of the commit before `nmt.rnn_loop.TrainingRNN` and `nmt.shared_grad`, e.g.
# `git worktree add --detach /tmp/wt_base 99d4e20`) and after (this checkout), alternating ROUNDS times (default 2):
#   OLD=/tmp/wt_base bash docs/results/step_training_2026-11-29/ab.sh   (nothing else running)
# CASES: "config:precision" pairs (default the peer shape in bf16 and fp32, the context-vector config in fp32).
# `python -m nmt` from a checkout's folder runs that checkout's code. Results: OUT (default here)/<case>_<side>_<round>.json.
HERE=$(cd "$(dirname "$0")" && pwd); NEW=$(cd "$HERE/../../.." && pwd)
OUT=${OUT:-$HERE}; STEPS=${STEPS:-16}; ROUNDS=${ROUNDS:-2}
CASES=${CASES:-"peer_shape:bf16 peer_shape:fp32 multi30k_de_en:fp32"}
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
mkdir -p "$OUT"
for r in $(seq "$ROUNDS"); do
  for case in $CASES; do
    config=${case%%:*}; precision=${case##*:}
    for side in old new; do
      w=$OLD; [ $side = new ] && w=$NEW
      json="$OUT/${config}_${precision}_${side}_$r.json"
      (cd "$w" && "$NEW/.venv/bin/python" -m nmt bench train --config "configs/$config.yaml" \
        --set train.precision="$precision" --steps "$STEPS" --warmup 3 --json "$json" > /dev/null 2>&1)
      python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[1], {k: d[k] for k in d if 'tokens_per_s' in k or 'fraction' in k})" "$json"
    done
  done
done
