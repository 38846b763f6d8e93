#!/usr/bin/env bash
# The context-vector config's translation speed: a model of configs/multi30k_de_en.yaml (MODEL) translates the
# 1,000 test sentences as whole processes in the default precision, beam 5 and greedy, ROUNDS rounds (default 3).
# On the Intel Xeon the model was trained 4 epochs (`nmt train --config configs/multi30k_de_en.yaml --set
# train.max_epochs=4 --output-dir /tmp/ctx4`). Nothing else running:
#   MODEL=/tmp/ctx4 bash benchmarks/context_translate.sh docs/results/side_by_side_xeon/context_translate.jsonl
set -u
OUT=$(realpath -m "${1:?usage: context_translate.sh OUT.jsonl}")
cd "$(dirname "$0")/.." && source .venv/bin/activate
MODEL=$(realpath "${MODEL:?set MODEL to a run directory}"); D=${NMT_DATA_DIR:-$(realpath ../shared/data/multi30k)}
mkdir -p "$(dirname "$OUT")"
for round in $(seq 1 "${ROUNDS:-3}"); do for beam in 5 1; do
  s=$(date +%s.%N)
  nmt translate --model "$MODEL" --beam-size $beam < "$D/test_2016_flickr.de" > /tmp/ctx_b$beam.hyp 2>/dev/null
  e=$(date +%s.%N)
  python3 -c "
import sacrebleu, json; h = open('/tmp/ctx_b$beam.hyp').read().splitlines(); r = open('$D/test_2016_flickr.en').read().splitlines()
print(json.dumps({'round': $round, 'beam': $beam, 'wall_s': round($e - $s, 3), 'sents_per_s_wall': round(1000 / ($e - $s), 1), 'bleu': round(sacrebleu.corpus_bleu(h, [r]).score, 2), 'mean_words': round(sum(len(x.split()) for x in h) / len(h), 2)}))"
done; done | tee "$OUT"
