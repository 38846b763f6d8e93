#!/usr/bin/env bash
# Training side by side on the 2-core Intel Xeon (avx512_bf16, AMX hidden), after the loss gradient made in the
# forward pass and the fp32 decoder's measured step loop: the seventh run's script with W=/tmp/peers_j and nmt in
# fp32 only (what `auto` takes here: bf16 products run at 0.52x fp32). Nothing else running:
#   bash docs/results/side_by_side_2026-11-29j/run.sh
HERE=$(cd "$(dirname "$0")" && pwd)
lscpu > "$HERE/lscpu.txt"
W=/tmp/peers_j PRECISIONS=fp32 bash "$HERE/../side_by_side_2026-11-29g/train.sh" && cp /tmp/peers_j/sbs/* "$HERE/"
