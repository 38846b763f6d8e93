#!/usr/bin/env bash
# nmt's other precisions on the model the side-by-side just trained, same machine, right after it.
# DTYPES (default "bf16 int8 int8+bf16"), MODEL (default: the side-by-side's nmt run) and OUT (the JSON-lines file)
# may be set; BENCH=0 skips the bf16 training benchmark at the end.
set -u
W=/tmp/peers; D=$W/data/raw; M=${MODEL:-$W/runs/nmt_peer}; NAME=$(basename "$M")
cd "$(dirname "$0")/../../.." && source .venv/bin/activate
uptime
for dtype in ${DTYPES:-bf16 int8 int8+bf16}; do for beam in 5 1; do
  s=$(date +%s.%N)
  nmt translate --model "$M" --beam-size $beam --dtype $dtype < $D/test_2016_flickr.de > $W/sbs/${NAME}_${dtype}_b$beam.hyp 2>/dev/null
  e=$(date +%s.%N)
  python3 -c "
import sacrebleu,json; h=open('$W/sbs/${NAME}_${dtype}_b$beam.hyp').read().splitlines(); r=open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'tool':'nmt','model':'$NAME','dtype':'$dtype','beam':$beam,'wall_s':round($e-$s,3),'sents_per_s_wall':round(1000/($e-$s),2),'bleu':round(sacrebleu.corpus_bleu(h,[r]).score,2)}))"
done; done | tee ${OUT:-$W/sbs/nmt_translate_precisions.jsonl}
if [ "${BENCH:-1}" = 1 ]; then
  nmt bench train --config configs/peer_shape.yaml --steps 30 --set train.precision=bf16 --json $W/sbs/nmt_bench_train_bf16.json > $W/sbs/nmt_bench_train_bf16.log 2>&1
  tail -3 $W/sbs/nmt_bench_train_bf16.log
fi
uptime
