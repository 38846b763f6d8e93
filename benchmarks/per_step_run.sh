#!/usr/bin/env bash
# usage: run.sh NAME [--set k=v ...]   (per-step curve runs of configs/peer_shape.yaml)
cd /work/wt/quality
export PYTHONPATH=$PWD NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PATH=/work/main/.venv/bin:$PATH
name=$1; shift
mkdir -p /tmp/q/$name
[ -f /tmp/q/base/spm.model ] && cp /tmp/q/base/spm.model /tmp/q/$name/ 2>/dev/null
start=$(date +%s)
nmt train --config configs/peer_shape.yaml --set train.max_steps=200 --set train.valid_every_steps=50 \
  --set train.log_every_steps=10 --set data.max_valid_examples=500 --set train.threads=${THREADS:-2} --set train.lr_patience=1000 "$@" \
  --output-dir /tmp/q/$name --quiet > /tmp/q/$name.log 2>&1
echo "wall $(( $(date +%s) - start )) s; load $(cat /proc/loadavg)" >> /tmp/q/$name.log
