#!/bin/bash
# F: the en-de attention twin with E's changes (28 epochs, dropout 0.3, patience 6).
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
.venv/bin/nmt train --config configs/multi30k_en_de_attention.yaml --set train.max_epochs=28 --set model.dropout=0.3 --set model.embedding_dropout=0.3 --set train.early_stopping_patience=6 --output-dir /tmp/r19/F --quiet > /tmp/r19/F.log 2>&1
date; uptime
