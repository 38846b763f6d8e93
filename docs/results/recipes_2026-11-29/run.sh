#!/bin/bash
# E: the shipped attention de-en config trained 28 epochs (cosine over 28) with dropout 0.3 (+ keep 5 snapshots).
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en_attention.yaml --set train.max_epochs=28 --set model.dropout=0.3 --set model.embedding_dropout=0.3 --set train.early_stopping_patience=6 --set train.keep_checkpoints=5 --output-dir /tmp/r19/E --quiet > /tmp/r19/E.log 2>&1
date; uptime
