#!/bin/bash
# Whole-process `nmt translate` of test_2016_flickr (1,000 sentences), 2 threads: the code before (OLD: a checkout of
# the commit before batches were searched in parallel, put first on PYTHONPATH) against the code after, alternating.
# usage: ab.sh OLD_CHECKOUT MODEL_DIR... ; prints one JSON line per run. Measured with the working tree at 74ed0c2
# (parallel batches, since reverted) and OLD_CHECKOUT a worktree of 33ebe88: `git worktree add /tmp/old 33ebe88`.
set -u
OLD=$1; shift
SRC=${NMT_DATA_DIR:-/work/shared/data/multi30k}/test_2016_flickr.de
PY=$(dirname "$0")/../../../.venv/bin/python
OUT=$(mktemp -d)
for model in "$@"; do for dtype in bf16 int8; do for beam in 5 1; do for rep in 1 2; do for code in old new; do
  if [ $code = old ]; then pp=$OLD; else pp=; fi
  s=$(date +%s.%N)
  PYTHONPATH=$pp $PY -m nmt translate --model "$model" --beam-size $beam --dtype $dtype --threads 2 < "$SRC" > "$OUT/$code.hyp" 2>/dev/null
  e=$(date +%s.%N)
  echo "{\"model\": \"$model\", \"dtype\": \"$dtype\", \"beam\": $beam, \"code\": \"$code\", \"rep\": $rep, \"wall_s\": $(python3 -c "print(round($e-$s,3))")}"
done; cmp -s "$OUT/old.hyp" "$OUT/new.hyp" || echo "{\"model\": \"$model\", \"dtype\": \"$dtype\", \"beam\": $beam, \"differ\": true}"
done; done; done; done
rm -rf "$OUT"
