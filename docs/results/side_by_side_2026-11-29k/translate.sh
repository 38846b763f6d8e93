#!/usr/bin/env bash
# Translation only, side by side in one run, on the 2-core Intel Xeon, after the block-wise beam top-k (29ba60b) and OpenMP spinning (c60dd68):
# the models of the 2026-11-29i run (OpenNMT-py's newest checkpoint before its budget, nmt's run in /tmp/peers),
# ROUNDS rounds (default 3) of OpenNMT-py (beam 5, greedy) then nmt int8 (the default here) and fp32, alternating.
# Run from anywhere, nothing else running: bash docs/results/side_by_side_2026-11-29k/translate.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
W=/tmp/peers
cd "$HERE/../../.." && source .venv/bin/activate
lscpu > "$HERE/lscpu.txt"; git rev-parse HEAD > "$HERE/commit.txt"
uptime > "$HERE/uptime.txt"
for round in $(seq 1 "${ROUNDS:-3}"); do
  PEERS_WORK=$W python3 ../shared/peers/translate_bench.py onmt --beams 5 1 --repeats 1 >> "$HERE/onmt_translate.jsonl"
  DTYPES="int8 fp32" BENCH=0 OUT="$HERE/nmt_peer_round$round.jsonl" bash "$HERE/../side_by_side_2026-11-28/precisions.sh"
  uptime >> "$HERE/uptime.txt"
done
