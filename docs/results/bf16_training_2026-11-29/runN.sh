#!/bin/bash
# Run K again with the per-step gradients in one product (nmt.shared_grad, nmt.rnn_loop.TrainingRNN: the encoder's
# weight gradients now one bf16 rounding per batch instead of one per step): the shipped context-vector config in
# bf16, against its fp32 run G16 (G16.metrics.jsonl here) and bf16 run K (K.metrics.jsonl).
cd "$(dirname "$0")/../../.."
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en.yaml --set train.precision=bf16 --output-dir /tmp/r25/N --quiet > /tmp/r25/N.log 2>&1
date; uptime
