#!/bin/bash
# The shipped en-de attention config (28 epochs, dropout 0.3) trained in bf16, to compare with its fp32 run F
# (the shipped result 39.23; recipes_2026-11-29/F.metrics.jsonl) and decide whether `train.precision: auto` suits it.
cd "$(dirname "$0")/../../.."
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
mkdir -p /tmp/r25
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_en_de_attention.yaml --set train.precision=bf16 \
  --set train.keep_checkpoints=5 --output-dir /tmp/r25/M --quiet > /tmp/r25/M.log 2>&1
date; uptime
# Scores (M_eval.json here): nmt evaluate --model /tmp/r25/M --split test|val --dtype fp32|int8 [--json F]
