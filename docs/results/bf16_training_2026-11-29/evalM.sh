#!/bin/bash
# Scores of run M (en-de attention config trained in bf16) and of the shipped fp32 run F with the same code:
# test and validation, beam search in fp32 and int8; M's greedy and lowercased scores too. Writes M_eval.json here.
cd "$(dirname "$0")/../../.."
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
M=${M:-/tmp/r25/M}; F=${F:-/tmp/r19/F}; TMP=$(mktemp -d)
for run in M F; do
  dir=${!run}
  for split in test valid; do
    for dtype in fp32 int8; do
      .venv/bin/nmt evaluate --model "$dir" --split $split --dtype $dtype --json "$TMP/${run}_${split}_$dtype.json" > /dev/null 2>&1
    done
  done
done
# the results table's other columns for M: greedy test and validation, lowercased test (fp32 search)
.venv/bin/nmt evaluate --model "$M" --split test --dtype fp32 --beam-size 1 --json "$TMP/M_test_greedy.json" > /dev/null 2>&1
.venv/bin/nmt evaluate --model "$M" --split valid --dtype fp32 --beam-size 1 --json "$TMP/M_valid_greedy.json" > /dev/null 2>&1
.venv/bin/nmt evaluate --model "$M" --split test --dtype fp32 --lowercase --json "$TMP/M_test_lc.json" > /dev/null 2>&1
python3 docs/results/bf16_training_2026-11-29/eval_summary.py "$TMP" docs/results/bf16_training_2026-11-29/M_eval.json
