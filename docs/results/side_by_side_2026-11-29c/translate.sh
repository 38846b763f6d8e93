#!/usr/bin/env bash
# Translation only, side by side in one run: the models the second run of 2026-11-29 trained (OpenNMT-py's newest
# checkpoint before its budget, nmt's run) and the shipped context-vector model. ROUNDS rounds (default 3) of
# OpenNMT-py (beam 5, greedy) then nmt in each precision, alternating, so that both see the same hour of the host.
# Run at 08cd990 (results here), again at e17f23d (../side_by_side_2026-11-29d) and at f2f705d with row-wise int8
# (../side_by_side_2026-11-29e), at 4f0226d after the start-up and greedy changes (../side_by_side_2026-11-29f);
# OUT: the work folder.
# Run from anywhere, nothing else running: bash docs/results/side_by_side_2026-11-29c/translate.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
W=/tmp/peers; OUT=${OUT:-$W/sbs_c}
cd "$HERE/../../.." && source .venv/bin/activate
mkdir -p $OUT
uptime >> $OUT/uptime.txt
for round in $(seq 1 "${ROUNDS:-3}"); do
  PEERS_WORK=$W python3 ../shared/peers/translate_bench.py onmt --beams 5 1 --repeats 1 >> $OUT/onmt_translate.jsonl
  DTYPES="int8 bf16 int8+bf16 fp32" BENCH=0 OUT=$OUT/nmt_peer_round$round.jsonl bash "$HERE/../side_by_side_2026-11-28/precisions.sh"
  MODEL=${CONTEXT_MODEL:-/tmp/r21/I} DTYPES="int8 bf16" BENCH=0 OUT=$OUT/nmt_context_round$round.jsonl \
    bash "$HERE/../side_by_side_2026-11-28/precisions.sh"
  uptime >> $OUT/uptime.txt
done
