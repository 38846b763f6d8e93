#!/bin/bash
# Scores of run N (the context-vector config in bf16 after nmt.shared_grad): test and validation, beam 5, fp32 and
# int8 search. Writes N_eval.json here. (Its fp32 run G16: 31.58 test / 31.07 valid; bf16 run K: 30.58 / 30.44.)
cd "$(dirname "$0")/../../.."
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
N=${N:-/tmp/r25/N}; TMP=$(mktemp -d)
for split in test valid; do
  for dtype in fp32 int8; do
    .venv/bin/nmt evaluate --model "$N" --split $split --dtype $dtype --json "$TMP/N_${split}_$dtype.json" > /dev/null 2>&1
  done
done
python3 docs/results/bf16_training_2026-11-29/eval_summary.py "$TMP" docs/results/bf16_training_2026-11-29/N_eval.json
