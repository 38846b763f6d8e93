#!/bin/bash
# H: the context-vector en-de twin with G's change (`--set model.context=max`, now in configs/multi30k_en_de.yaml);
# the length penalty chosen on en-de validation after.
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
.venv/bin/nmt train --config configs/multi30k_en_de.yaml --set model.context=max --output-dir /tmp/r20/maxende --quiet
date; uptime
for lp in 0.6 1.0 1.5 2.0; do   # validation, beam 5: 27.71 / 28.03 / 28.33 / 28.09
  .venv/bin/nmt evaluate --model /tmp/r20/maxende --split valid --beam-size 5 --length-penalty $lp --dtype fp32
done
OUT=/tmp/r20/scores bash docs/results/recipes_2026-11-28/eval.sh H --model /tmp/r20/maxende --length-penalty 1.5
