#!/usr/bin/env bash
# The second side-by-side of 2026-11-29, after that day's search changes (the attention memory cast to bf16 once,
# one memory row per sentence for its beams, `translate` ending without Python's teardown): the first run's script
# unchanged (harness, precisions, bf16 training, fp32 search), then the shipped context-vector model
# (configs/multi30k_de_en.yaml as trained by results/recipes_2026-11-29/runI.sh) in int8, bf16 and fp32.
# Run from anywhere, nothing else running: bash docs/results/side_by_side_2026-11-29b/run.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/../side_by_side_2026-11-29/run.sh"
MODEL=${CONTEXT_MODEL:-/tmp/r21/I} DTYPES="int8 bf16 fp32" BENCH=0 OUT=/tmp/peers/sbs/nmt_context_translate.jsonl \
  bash "$HERE/../side_by_side_2026-11-28/precisions.sh"
uptime >> /tmp/peers/sbs/uptime.txt
