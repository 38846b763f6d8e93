#!/bin/bash
# The shipped attention config (28 epochs, dropout 0.3) trained in bf16 with the day's bf16 changes (attention
# softmax in fp32, the stepwise decoder through torch's LSTM cell, 16-bit dropout masks), to compare with its fp32
# run E (the shipped result; E.metrics.jsonl here). CONFIG and RUN choose another config and run folder (runM.sh).
cd "$(dirname "$0")/../../.."
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
CONFIG=${CONFIG:-configs/multi30k_de_en_attention.yaml}; RUN=${RUN:-/tmp/r24/L}
mkdir -p "$(dirname "$RUN")"
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config "$CONFIG" --set train.precision=bf16 \
  --set train.keep_checkpoints=5 --output-dir "$RUN" --quiet > "$RUN.log" 2>&1
date; uptime
# Scores (L_eval.json here): nmt evaluate --model /tmp/r24/L --split test|val --dtype fp32|int8 [--beam-size 1] [--lowercase] --json F
