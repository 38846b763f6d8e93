#!/usr/bin/env bash
# Translation side by side with OpenNMT-py 3.5.1: the 1,000 test sentences as whole processes (start-up and model
# load included), ROUNDS rounds (default 3) of OpenNMT-py (beam 5, greedy) then nmt in each of DTYPES (default
# "int8 bf16 int8+bf16 fp32"), alternating, so that both see the same hour of the host. The models are the harness's
# (`W=/tmp/peers BUDGET=480 bash ../shared/peers/side_by_side.sh`: OpenNMT-py's last checkpoint and nmt's fp32 run
# /tmp/peers/runs/nmt_peer); CONTEXT_MODEL, when set, adds a context-vector model in CONTEXT_DTYPES (default
# "int8 bf16"). Nothing else running:
#   CONTEXT_MODEL=runs/multi30k_de_en bash benchmarks/side_by_side_translate.sh docs/results/side_by_side_epyc/translate
#   DTYPES="int8 fp32" bash benchmarks/side_by_side_translate.sh docs/results/side_by_side_xeon/translate
# then: python benchmarks/side_by_side_summary.py OUT_DIR > OUT_DIR/summary.txt
set -u
OUT=$(realpath -m "${1:?usage: side_by_side_translate.sh OUT_DIR}")
cd "$(dirname "$0")/.." && source .venv/bin/activate
W=/tmp/peers; D=$W/data/raw
mkdir -p "$OUT" "$W/sbs"
lscpu > "$OUT/lscpu.txt"; git rev-parse HEAD > "$OUT/commit.txt"
uptime > "$OUT/uptime.txt"
precisions() {  # precisions MODEL DTYPES: one JSON line per precision and beam (whole-process seconds, BLEU)
  local model=$1 name; name=$(basename "$1")
  for dtype in $2; do for beam in 5 1; do
    s=$(date +%s.%N)
    nmt translate --model "$model" --beam-size $beam --dtype $dtype < $D/test_2016_flickr.de > "$W/sbs/${name}_${dtype}_b$beam.hyp" 2>/dev/null
    e=$(date +%s.%N)
    python3 -c "
import sacrebleu,json; h=open('$W/sbs/${name}_${dtype}_b$beam.hyp').read().splitlines(); r=open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'tool':'nmt','model':'$name','dtype':'$dtype','beam':$beam,'wall_s':round($e-$s,3),'sents_per_s_wall':round(1000/($e-$s),2),'bleu':round(sacrebleu.corpus_bleu(h,[r]).score,2)}))"
  done; done
}
for round in $(seq 1 "${ROUNDS:-3}"); do
  PEERS_WORK=$W python3 ../shared/peers/translate_bench.py onmt --beams 5 1 --repeats 1 >> "$OUT/onmt_translate.jsonl"
  precisions $W/runs/nmt_peer "${DTYPES:-int8 bf16 int8+bf16 fp32}" > "$OUT/nmt_peer_round$round.jsonl"
  if [ -n "${CONTEXT_MODEL:-}" ]; then
    precisions "$CONTEXT_MODEL" "${CONTEXT_DTYPES:-int8 bf16}" > "$OUT/nmt_context_round$round.jsonl"
  fi
  uptime >> "$OUT/uptime.txt"
done
