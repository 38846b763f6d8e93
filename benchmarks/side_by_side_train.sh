#!/usr/bin/env bash
# Training side by side with OpenNMT-py 3.5.1 on the peer shape: OpenNMT-py (the harness's own budget driver and log
# parser), then nmt in each of PRECISIONS (default "fp32 bf16"; "fp32" on a host where bf16 is slow), BUDGET seconds
# each (default 480), one after the other; then each model's test BLEU (beam 5) and `nmt bench train` (30 steps) in
# each precision. Needs the harness's OpenNMT-py virtualenv and data in /tmp/peers: run
# `W=/tmp/peers BUDGET=480 bash ../shared/peers/side_by_side.sh` once first. Nothing else running:
#   bash benchmarks/side_by_side_train.sh docs/results/side_by_side_epyc/train
#   PRECISIONS=fp32 bash benchmarks/side_by_side_train.sh docs/results/side_by_side_xeon/train
set -u
OUT=$(realpath -m "${1:?usage: side_by_side_train.sh OUT_DIR}")
cd "$(dirname "$0")/.." && source .venv/bin/activate
P=../shared/peers; W=${W:-/tmp/peers_train}; D=$W/data/raw; BUDGET=${BUDGET:-480}
export NMT_DATA_DIR=${NMT_DATA_DIR:-$(realpath ../shared/data/multi30k)} HF_HUB_OFFLINE=1 PEERS_WORK=$W
mkdir -p "$W/runs" "$OUT"
for shared in onmt data; do [ -e "$W/$shared" ] || ln -s /tmp/peers/$shared "$W/$shared"; done
lscpu > "$OUT/lscpu.txt"; git rev-parse HEAD > "$OUT/commit.txt"
uptime > "$OUT/uptime.txt"
rm -rf "$W/runs/onmt"
sed "s#/tmp/peers#$W#g" $P/configs/onmt_rnn.yaml > "$W/onmt_rnn.yaml"
python3 $P/train_budget.py onmt --budget "$BUDGET" --config "$W/onmt_rnn.yaml" > "$OUT/onmt_train.txt"
python3 - <<PY > "$OUT/onmt_throughput.json"
import json, re, sys
sys.path.insert(0, "$P")
import parse_train_logs as p
steps = [int(s) for s in re.findall(r"Step (\d+)/", open("$W/runs/onmt.stdout.log").read())]
print(json.dumps(p.onmt(50, max(steps))))
PY
uptime >> "$OUT/uptime.txt"
for precision in ${PRECISIONS:-fp32 bf16}; do
  rm -rf "$W/runs/nmt_$precision"
  nmt train --config configs/peer_shape.yaml --set train.precision=$precision \
    --set train.max_minutes=$(python3 -c "print($BUDGET/60)") --output-dir "$W/runs/nmt_$precision" --quiet \
    > "$OUT/nmt_train_$precision.log" 2>&1
  cp "$W/runs/nmt_$precision/metrics.jsonl" "$OUT/nmt_${precision}_metrics.jsonl"
  uptime >> "$OUT/uptime.txt"
done
python3 $P/translate_bench.py onmt --beams 5 --repeats 1 > "$OUT/onmt_translate.jsonl"
for precision in ${PRECISIONS:-fp32 bf16}; do
  nmt translate --model "$W/runs/nmt_$precision" --beam-size 5 < "$D/test_2016_flickr.de" > "$OUT/nmt_$precision.hyp" 2>/dev/null
  python3 -c "
import sacrebleu, json; h = open('$OUT/nmt_$precision.hyp').read().splitlines(); r = open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'tool': 'nmt', 'trained': '$precision', 'beam': 5, 'bleu': round(sacrebleu.corpus_bleu(h, [r]).score, 2)}))"
done > "$OUT/nmt_translate.jsonl"
for precision in ${PRECISIONS:-fp32 bf16}; do
  nmt bench train --config configs/peer_shape.yaml --steps 30 --set train.precision=$precision \
    --json "$OUT/nmt_bench_train_$precision.json" > "$OUT/nmt_bench_train_$precision.log" 2>&1
done
uptime >> "$OUT/uptime.txt"
