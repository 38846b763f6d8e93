#!/bin/bash
# The shipped context-vector config trained in bf16 (with the fp32 attention softmax commit; this model has no
# attention), to compare with its fp32 run G16 (the shipped run G16, metrics in G16.metrics.jsonl here).
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en.yaml --set train.precision=bf16 --output-dir /tmp/r23/K --quiet > /tmp/r23/K.log 2>&1
date; uptime
