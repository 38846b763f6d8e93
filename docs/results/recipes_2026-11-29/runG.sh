#!/bin/bash
# G: the context-vector de-en config with the context vector max-pooled over the encoder's outputs
# (`--set model.context=max`, now in configs/multi30k_de_en.yaml); the length penalty chosen on validation after.
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
date; uptime
.venv/bin/nmt train --config configs/multi30k_de_en.yaml --set model.context=max --output-dir /tmp/r20/max
date; uptime
for lp in 0.6 1.0 1.5; do   # validation, beam 5: 29.69 / 29.91 / 29.78
  .venv/bin/nmt evaluate --model /tmp/r20/max --split valid --beam-size 5 --length-penalty $lp --dtype fp32
done
OUT=/tmp/r20/scores bash docs/results/recipes_2026-11-28/eval.sh G --model /tmp/r20/max --length-penalty 1.0
