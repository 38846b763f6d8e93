#!/bin/bash
# glibc malloc's own thresholds ("glibc") against the ones `nmt` sets at start ("nmt": nmt/runtime.py), alternating,
# same code: GLIBC_TUNABLES with a malloc tunable at its default value makes `nmt` leave glibc's thresholds alone.
# Whole-process `nmt translate` of test_2016_flickr (1,000 sentences, 2 threads) and `nmt bench train`.
# usage: bash benchmarks/malloc_ab.sh ATTENTION_RUN CONTEXT_RUN > docs/results/malloc/ab.jsonl
#        python benchmarks/malloc_summary.py docs/results/malloc/ab.jsonl > docs/results/malloc/summary.md
# one JSON line per run (wall seconds, page faults, peak RSS).
set -u
E=$1; G=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${NMT_DATA_DIR:-$ROOT/../shared/data/multi30k}/test_2016_flickr.de
OUT=$(mktemp -d)
run() {  # run NAME MODE CMD... : the command's wall time, minor page faults and peak RSS as one JSON line
  local name=$1 mode=$2; shift 2
  local tun=; [ "$mode" = glibc ] && tun=glibc.malloc.tcache_count=7
  GLIBC_TUNABLES=$tun "$ROOT/.venv/bin/python" - "$name" "$mode" "$@" <<'PY'
import json, os, sys, time
name, mode, *cmd = sys.argv[1:]
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    if name.startswith("translate"):
        os.dup2(os.open(os.environ["SRC"], os.O_RDONLY), 0); os.dup2(os.open(os.environ["HYP"] + mode, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    else:
        os.dup2(os.open(os.environ["HYP"] + mode + ".json.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    os.execv(cmd[0], cmd)
_, status, ru = os.wait4(pid, 0)
print(json.dumps({"run": name, "malloc": mode, "rc": os.waitstatus_to_exitcode(status), "wall_s": round(time.perf_counter() - t, 3),
                  "minflt": ru.ru_minflt, "maxrss_mb": round(ru.ru_maxrss / 1024)}), flush=True)
PY
}
export SRC HYP=$OUT/hyp.
NMT=$ROOT/.venv/bin/nmt
for rep in ${REPS:-1 2}; do
  for model in E:$E G:$G; do for dtype in bf16 int8; do for beam in 5 1; do for mode in glibc nmt; do
    run "translate ${model%%:*} $dtype beam $beam" $mode $NMT translate --model "${model#*:}" --beam-size $beam --dtype $dtype --threads 2
  done; cmp -s "$OUT/hyp.glibc" "$OUT/hyp.nmt" || echo '{"differ": true}'; done; done; done
  for cfg in multi30k_de_en peer_shape; do for prec in fp32 bf16; do for mode in glibc nmt; do
    run "bench train $cfg $prec" $mode $NMT bench train --config "$ROOT/configs/$cfg.yaml" --set train.precision=$prec --steps 20 --json "$OUT/train.$mode.json"
    "$ROOT/.venv/bin/python" -c "import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps({'bench': sys.argv[2], 'malloc': sys.argv[3], 'tokens_per_s': r.get('target_tokens_per_s', r.get('tokens_per_s'))}))" "$OUT/train.$mode.json" "$cfg $prec" $mode
  done; done; done
done
rm -rf "$OUT"
