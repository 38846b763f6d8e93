#!/usr/bin/env bash
# Training side by side, seventh run of 2026-11-29 (after the bf16 decoder step through torch's LSTM cell and the
# 16-bit dropout masks): OpenNMT-py, nmt fp32 (the default) and nmt bf16, 480 s each one after the other, the
# harness's own budget driver and log parser for OpenNMT-py; then each model's test BLEU (beam 5, each toolkit's
# default search) and `nmt bench train` in both precisions. Work folder /tmp/peers_g, sharing the OpenNMT-py
# virtualenv and data of /tmp/peers (run ../../../../shared/peers/side_by_side.sh once first).
# Run from anywhere, nothing else running: bash docs/results/side_by_side_2026-11-29g/train.sh (W: another work folder;
# PRECISIONS: the nmt precisions, default "fp32 bf16")
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=../shared/peers; W=${W:-/tmp/peers_g}; D=$W/data/raw; BUDGET=${BUDGET:-480}
cd "$HERE/../../.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1 PEERS_WORK=$W
mkdir -p $W/runs $W/sbs
for shared in onmt data; do [ -e $W/$shared ] || ln -s /tmp/peers/$shared $W/$shared; done
OUT=$W/sbs
uptime > $OUT/uptime.txt
rm -rf $W/runs/onmt
sed "s#/tmp/peers#$W#g" $P/configs/onmt_rnn.yaml > $W/onmt_rnn.yaml
python3 $P/train_budget.py onmt --budget $BUDGET --config $W/onmt_rnn.yaml > $OUT/onmt_train.txt
python3 - <<PY > $OUT/onmt_throughput.json
import json, re, sys
sys.path.insert(0, "$P")
import parse_train_logs as p
steps = [int(s) for s in re.findall(r"Step (\d+)/", open("$W/runs/onmt.stdout.log").read())]
print(json.dumps(p.onmt(50, max(steps))))
PY
uptime >> $OUT/uptime.txt
for precision in ${PRECISIONS:-fp32 bf16}; do
  rm -rf $W/runs/nmt_$precision
  nmt train --config configs/peer_shape.yaml --set train.precision=$precision \
    --set train.max_minutes=$(python3 -c "print($BUDGET/60)") --output-dir $W/runs/nmt_$precision --quiet \
    > $OUT/nmt_train_$precision.log 2>&1
  cp $W/runs/nmt_$precision/metrics.jsonl $OUT/nmt_${precision}_metrics.jsonl
  uptime >> $OUT/uptime.txt
done
python3 $P/translate_bench.py onmt --beams 5 --repeats 1 > $OUT/onmt_translate.jsonl
for precision in ${PRECISIONS:-fp32 bf16}; do
  nmt translate --model $W/runs/nmt_$precision --beam-size 5 < $D/test_2016_flickr.de > $OUT/nmt_$precision.hyp 2>/dev/null
  python3 -c "
import sacrebleu, json; h = open('$OUT/nmt_$precision.hyp').read().splitlines(); r = open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'tool': 'nmt', 'trained': '$precision', 'beam': 5, 'bleu': round(sacrebleu.corpus_bleu(h, [r]).score, 2)}))"
done > $OUT/nmt_translate.jsonl
for precision in ${PRECISIONS:-fp32 bf16}; do
  nmt bench train --config configs/peer_shape.yaml --steps 30 --set train.precision=$precision \
    --json $OUT/nmt_bench_train_$precision.json > $OUT/nmt_bench_train_$precision.log 2>&1
done
uptime >> $OUT/uptime.txt
