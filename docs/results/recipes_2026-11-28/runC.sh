#!/bin/bash
while pgrep -f /tmp/r18/run.sh > /dev/null; do sleep 10; done
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
/usr/bin/time -v .venv/bin/nmt train --config configs/multi30k_de_en_attention.yaml --set train.keep_checkpoints=5 --set train.precision=bf16 --output-dir /tmp/r18/C --quiet > /tmp/r18/C.log 2>&1
date; uptime
