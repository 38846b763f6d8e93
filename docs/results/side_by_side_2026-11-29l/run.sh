#!/usr/bin/env bash
# Training side by side on the 2-core Intel Xeon (avx512_bf16, AMX hidden) after fused Adam (5e031f8) and OpenMP
# spinning (c60dd68): run j's script with W=/tmp/peers_l and nmt in fp32 only (what `auto` takes here). Nothing
# else running: bash docs/results/side_by_side_2026-11-29l/run.sh
HERE=$(cd "$(dirname "$0")" && pwd)
lscpu > "$HERE/lscpu.txt"; git -C "$HERE" rev-parse HEAD > "$HERE/commit.txt"
W=/tmp/peers_l PRECISIONS=fp32 bash "$HERE/../side_by_side_2026-11-29g/train.sh" && cp /tmp/peers_l/sbs/* "$HERE/"
