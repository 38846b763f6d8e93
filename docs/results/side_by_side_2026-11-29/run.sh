#!/usr/bin/env bash
# The side-by-side of 2026-11-29 (after nmt's malloc thresholds, nmt/runtime.py): the harness as shipped, nmt's
# other search precisions on the model it trained, then nmt trained in bf16 for the same budget and translated.
# Run from anywhere, nothing else running: bash docs/results/side_by_side_2026-11-29/run.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
W=/tmp/peers; D=$W/data/raw
cd "$HERE/../../.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
mkdir -p $W/sbs
uptime > $W/sbs/uptime.txt
W=$W BUDGET=480 REPS=2 bash ../shared/peers/side_by_side.sh
uptime >> $W/sbs/uptime.txt
bash "$HERE/../side_by_side_2026-11-28/precisions.sh"
rm -rf $W/runs/nmt_peer_bf16
nmt train --config configs/peer_shape.yaml --set train.precision=bf16 --set train.max_minutes=8 \
    --output-dir $W/runs/nmt_peer_bf16 --quiet > $W/sbs/nmt_train_bf16.log 2>&1
for beam in 5 1; do
  s=$(date +%s.%N)
  nmt translate --model $W/runs/nmt_peer_bf16 --beam-size $beam < $D/test_2016_flickr.de > $W/sbs/nmt_bf16train_b$beam.hyp 2>/dev/null
  e=$(date +%s.%N)
  python3 -c "
import sacrebleu,json; h=open('$W/sbs/nmt_bf16train_b$beam.hyp').read().splitlines(); r=open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'tool':'nmt','trained':'bf16','beam':$beam,'wall_s':round($e-$s,3),'sents_per_s_wall':round(1000/($e-$s),2),'bleu':round(sacrebleu.corpus_bleu(h,[r]).score,2)}))"
done | tee $W/sbs/nmt_bf16train_translate.jsonl
uptime >> $W/sbs/uptime.txt
# fp32 search on the fp32-trained model (the harness's own rows now search in bf16, the default): run by hand
# right after the lines above, 07:36 UTC
DTYPES=fp32 BENCH=0 OUT=$W/sbs/nmt_translate_fp32.jsonl bash "$HERE/../side_by_side_2026-11-28/precisions.sh"
