#!/usr/bin/env bash
# The first 200 steps of configs/peer_shape.yaml with the given overrides, for the per-step table of docs/quality.md
# (writes /tmp/q/NAME; then benchmarks/per_step_plot.py draws the table and the plot):
#   bash benchmarks/per_step_run.sh NAME [--set k=v ...]
cd "$(dirname "$0")/.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-$(realpath ../shared/data/multi30k)} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
name=$1; shift
mkdir -p /tmp/q/$name
[ -f /tmp/q/base/spm.model ] && cp /tmp/q/base/spm.model /tmp/q/$name/ 2>/dev/null
start=$(date +%s)
nmt train --config configs/peer_shape.yaml --set train.max_steps=200 --set train.valid_every_steps=50 \
  --set train.log_every_steps=10 --set data.max_valid_examples=500 --set train.threads=${THREADS:-2} --set train.lr_patience=1000 "$@" \
  --output-dir /tmp/q/$name --quiet > /tmp/q/$name.log 2>&1
echo "wall $(( $(date +%s) - start )) s; load $(cat /proc/loadavg)" >> /tmp/q/$name.log
