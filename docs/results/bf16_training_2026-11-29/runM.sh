#!/bin/bash
# The shipped en-de attention config (28 epochs, dropout 0.3) trained in bf16, to compare with its fp32 run F
# (the shipped result 39.23; recipes_2026-11-29/F.metrics.jsonl) and decide whether `train.precision: auto` suits it.
# Scores: evalM.sh (M_eval.json here).
CONFIG=configs/multi30k_en_de_attention.yaml RUN=/tmp/r25/M bash "$(dirname "$0")/runL.sh"
