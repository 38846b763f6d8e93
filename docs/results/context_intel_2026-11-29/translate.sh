#!/usr/bin/env bash
# The context-vector config's translation speed on the 2-core Intel Xeon: a model of configs/multi30k_de_en.yaml
# trained 4 epochs (`nmt train --config configs/multi30k_de_en.yaml --set train.max_epochs=4 --output-dir /tmp/ctx4`,
# 10.6 min, validation BLEU 16.07: the shipped 16 epochs would take about 45 min here), translated whole process,
# int8 (the default here) beam 5 and greedy, ROUNDS rounds (default 3). Nothing else running:
#   bash docs/results/context_intel_2026-11-29/translate.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=${MODEL:-/tmp/ctx4}; D=${NMT_DATA_DIR:-/work/shared/data/multi30k}
cd "$HERE/../../.." && source .venv/bin/activate
git rev-parse HEAD > "$HERE/commit.txt"
for round in $(seq 1 "${ROUNDS:-3}"); do for beam in 5 1; do
  s=$(date +%s.%N)
  nmt translate --model "$MODEL" --beam-size $beam < "$D/test_2016_flickr.de" > /tmp/ctx_b$beam.hyp 2>/dev/null
  e=$(date +%s.%N)
  python3 -c "
import sacrebleu, json; h = open('/tmp/ctx_b$beam.hyp').read().splitlines(); r = open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'round': $round, 'beam': $beam, 'wall_s': round($e - $s, 3), 'sents_per_s_wall': round(1000 / ($e - $s), 1), 'bleu': round(sacrebleu.corpus_bleu(h, [r]).score, 2), 'mean_words': round(sum(len(x.split()) for x in h) / len(h), 2)}))"
done; done | tee "$HERE/translate.jsonl"
