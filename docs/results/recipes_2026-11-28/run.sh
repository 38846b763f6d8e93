#!/bin/bash
# A: the shipped attention de-en config exactly (+ keep 5 snapshots); B: + uniform init, untied output layer.
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en_attention.yaml --set train.keep_checkpoints=5 --output-dir /tmp/r18/A --quiet > /tmp/r18/A.log 2>&1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en_attention.yaml --set train.keep_checkpoints=5 --set model.init=uniform --set model.tie_embeddings=false --output-dir /tmp/r18/B --quiet > /tmp/r18/B.log 2>&1
date; uptime
