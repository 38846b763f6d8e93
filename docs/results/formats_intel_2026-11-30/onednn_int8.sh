#!/bin/bash
# oneDNN's int8 matmul (scales in its epilogue) against torch._int_mm for the row-wise int8 search: the patch
# onednn_qlinear.diff (on 4d5978a), tried on 2026-11-30 and not kept. Needs a peer-shape model (MODEL, default the
# side-by-side run's /tmp/peers/runs/nmt_peer) and a worktree of the code without the patch (OLD).
# (epilogue.py runs without the patch.) batch_rows.py: the search time by decode.batch_rows, MODEL int8 BEAM.
#   OLD=/tmp/old bash docs/results/formats_intel_2026-11-30/onednn_int8.sh   (from a checkout with the patch applied)
HERE=$(cd "$(dirname "$0")" && pwd); NEW=$(cd "$HERE/../../.." && pwd)
MODEL=${MODEL:-/tmp/peers/runs/nmt_peer}; T=${NMT_DATA_DIR:-/work/shared/data/multi30k}/test_2016_flickr
export GOMP_SPINCOUNT=10000 HF_HUB_OFFLINE=1
"$NEW/.venv/bin/python" "$HERE/epilogue.py"                   # one product and its scales, each way
"$NEW/.venv/bin/python" "$HERE/first_call.py"                 # a new row count's first call against its second
for beam in 5 1; do "$NEW/.venv/bin/python" "$HERE/in_process.py" "$MODEL" $beam; done   # search only, alternating
for r in 1 2 3 4; do for beam in 5 1; do for side in old new; do   # whole processes, alternating
  w=$OLD; [ $side = new ] && w=$NEW
  (cd "$w" && /usr/bin/time -f "$side beam$beam round $r %e s" "$NEW/.venv/bin/python" -m nmt translate \
    --model "$MODEL" --beam-size $beam --dtype int8 < "$T.de" 2>&1 > /dev/null | tail -1)
done; done; done
