#!/bin/bash
# I: the shipped context-vector de-en config (16 epochs, as run G16, which it reproduces step for step: same
# validation curve, the same best weights) with weight snapshots kept (every 200 steps and at each epoch's end),
# then checkpoint averaging chosen on validation and the chosen average scored on test once.
cd /work/main
export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
.venv/bin/nmt train --config configs/multi30k_de_en.yaml --set train.keep_checkpoints=10 --output-dir /tmp/r21/I --quiet
for n in 3 5 10; do   # validation, beam 5, length penalty 1.5: 31.04 / 31.07 / 30.91 (best single checkpoint: 31.07)
  .venv/bin/nmt average --model /tmp/r21/I --last $n --output /tmp/r21/I_avg$n
  .venv/bin/nmt evaluate --model /tmp/r21/I_avg$n --split valid --beam-size 5 --length-penalty 1.5 --dtype fp32
done
OUT=/tmp/r21/scores bash docs/results/recipes_2026-11-28/eval.sh I_avg5 --model /tmp/r21/I_avg5 --length-penalty 1.5
