#!/usr/bin/env bash
# nmt alone, one run: fp32 vs bf16 training on the peer shape (same steps), bench train per precision, and
# translation of the first 200 test sentences in every search precision (OpenNMT-py could not finish 10 steps
# within the budget under this machine's load; see docs/performance.md).
set -euo pipefail
HERE=/work/shared/peers
W=/tmp/peers; BUDGET=${BUDGET:-300}
export PYTHONPATH=/tmp/sbs/code NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PATH=/work/main/.venv/bin:$PATH
S=/tmp/sbs/out; rm -rf $S; mkdir -p $S; D=/work/shared/data/multi30k
cd /tmp/sbs/code
log_up() { echo "$(date -u +%H:%M:%S) $1 $(uptime)" >> $S/uptime.txt; }
log_up start
python3 $HERE/matmul_peak.py > $S/matmul_peak_start.txt 2>/dev/null
steps_arg=""
for prec in fp32 bf16; do
  rm -rf $W/runs/nmt_$prec
  log_up nmt_train_$prec
  nmt train --config configs/peer_shape.yaml --set train.max_minutes=$(python3 -c "print($BUDGET/60)") \
      --set train.precision=$prec --set train.log_every_steps=5 $steps_arg \
      --output-dir $W/runs/nmt_$prec --quiet > $S/nmt_train_$prec.log 2>&1
  steps_arg="--set train.max_steps=$(python3 -c "import json; print(json.load(open('$W/runs/nmt_fp32/metadata.json'))['steps'])")"
done
head -200 $D/test_2016_flickr.de > $S/test200.de; head -200 $D/test_2016_flickr.en > $S/test200.en
log_up translate
for beam in 5 1; do for dtype in fp32 bf16 int8 int8+bf16; do
  nmt bench translate --model $W/runs/nmt_fp32 --input $S/test200.de --ref $S/test200.en --beam-size $beam \
      --dtype $dtype --json $S/translate_b${beam}_$dtype.json > $S/translate_b${beam}_$dtype.txt 2>&1
done; done
log_up bench_train
for prec in fp32 bf16; do
  nmt bench train --config configs/peer_shape.yaml --set train.precision=$prec --steps 8 --warmup 2 \
      --json $S/bench_train_$prec.json > $S/bench_train_$prec.txt 2>&1
done
python3 $HERE/matmul_peak.py > $S/matmul_peak_end.txt 2>/dev/null
log_up done
touch $S/DONE
