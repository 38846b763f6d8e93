#!/bin/bash
# Run C of recipes_2026-11-28 (bf16 training, the attention config as it was then: 10 epochs, dropout 0.2) again,
# with the attention softmax in fp32.
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en_attention.yaml --set model.dropout=0.2 \
  --set model.embedding_dropout=0.2 --set train.max_epochs=10 --set train.early_stopping_patience=4 \
  --set train.keep_checkpoints=5 --set train.precision=bf16 --output-dir /tmp/r23/C2 --quiet > /tmp/r23/C2.log 2>&1
date; uptime
