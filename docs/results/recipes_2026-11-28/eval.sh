#!/bin/bash
# eval.sh NAME MODEL_ARGS... : valid beam 5, test beam 5 and greedy (+ lowercase BLEU), one line each
cd /work/main; export NMT_DATA_DIR=/work/shared/data/multi30k HF_HUB_OFFLINE=1
name=$1; shift
for run in "valid 5" "test 5" "test 1"; do set -- $run "$@"; split=$1; beam=$2; shift 2
  .venv/bin/nmt evaluate "$@" --split $split --beam-size $beam --threads 2 --dtype fp32 --json ${OUT:-/tmp/r18}/$name.$split.b$beam.json > /dev/null 2>&1
  lc=$(.venv/bin/nmt evaluate "$@" --split $split --beam-size $beam --threads 2 --dtype fp32 --lowercase 2>&1 | grep -m1 "^BLEU" )
  python3 -c "import json; d=json.load(open('${OUT:-/tmp/r18}/$name.$split.b$beam.json')); print('$name', '$split', 'beam', $beam, d['dtype'], 'BLEU', d['bleu']['score'], 'chrF', d['chrf']['score'], 'lc: $(echo $lc | cut -d" " -f3)', d['seconds'], 's')"
done
