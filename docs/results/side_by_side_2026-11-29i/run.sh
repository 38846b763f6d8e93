#!/usr/bin/env bash
# Side by side on a second kind of host (2-core Intel Xeon, avx512_bf16 and avx512_vnni, AMX hidden): the shared
# harness end to end (OpenNMT-py setup, data, both trainings for 480 s, both translations, `nmt bench train` in the
# default fp32), then `nmt bench train` in bf16 and the harness's matmul peaks. Work folder /tmp/peers.
# Run from anywhere, nothing else running: bash docs/results/side_by_side_2026-11-29i/run.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../../.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-/work/shared/data/multi30k} HF_HUB_OFFLINE=1
lscpu > "$HERE/lscpu.txt"; uptime > "$HERE/uptime.txt"
W=/tmp/peers bash ../shared/peers/side_by_side.sh > "$HERE/summary.txt" 2>&1
uptime >> "$HERE/uptime.txt"
nmt bench train --config configs/peer_shape.yaml --steps 30 --set train.precision=bf16 \
  --json "$HERE/nmt_bench_train_bf16.json" > "$HERE/nmt_bench_train_bf16.log" 2>&1
python3 ../shared/peers/matmul_peak.py > "$HERE/matmul_peak.txt" 2>&1
uptime >> "$HERE/uptime.txt"
cp /tmp/peers/sbs/*.json* /tmp/peers/sbs/*.txt /tmp/peers/sbs/*.log "$HERE/" 2>/dev/null
cp /tmp/peers/runs/nmt_peer/metrics.jsonl "$HERE/nmt_metrics.jsonl"
