#!/usr/bin/env bash
# Scores of one trained model as the results tables quote them: test and validation BLEU, chrF and TER with beam 5
# in fp32 and in int8, greedy in fp32, and lowercased test BLEU, with the run's epochs and minutes (from its
# metrics.jsonl), gathered into one JSON file (no hypotheses); the machine is the one it trained on:
#   nmt train --config configs/multi30k_de_en_attention.yaml --output-dir runs/multi30k_de_en_attention
#   bash benchmarks/score_model.sh runs/multi30k_de_en_attention docs/results/shipped_models/multi30k_de_en_attention.json
set -u
RUN=$(realpath "${1:?usage: score_model.sh RUN_DIR OUT.json}"); OUT=$(realpath -m "${2:?usage: score_model.sh RUN_DIR OUT.json}")
cd "$(dirname "$0")/.." && source .venv/bin/activate
export NMT_DATA_DIR=${NMT_DATA_DIR:-$(realpath ../shared/data/multi30k)} HF_HUB_OFFLINE=1
TMP=$(mktemp -d)
for split in test valid; do
  nmt evaluate --model "$RUN" --split $split --dtype fp32 --json "$TMP/${split}_fp32.json" > /dev/null
  nmt evaluate --model "$RUN" --split $split --dtype int8 --json "$TMP/${split}_int8.json" > /dev/null
  nmt evaluate --model "$RUN" --split $split --dtype fp32 --beam-size 1 --json "$TMP/${split}_greedy.json" > /dev/null
done
nmt evaluate --model "$RUN" --split test --dtype fp32 --lowercase --json "$TMP/test_lowercased.json" > /dev/null
python3 - "$TMP" "$OUT" "$RUN" <<'PY'
import json, pathlib, sys
import yaml
folder, out, run = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
scores = {}
for p in sorted(folder.glob("*.json")):
    d = json.loads(p.read_text())
    scores[p.stem] = {k: d[k] for k in ("data", "beam_size", "dtype", "length_penalty", "sentences", "seconds")}
    scores[p.stem].update(bleu=d["bleu"]["score"], chrf=d["chrf"]["score"], ter=d["ter"]["score"], signature=d["bleu"]["signature"])
config = yaml.safe_load((run / "config.yaml").read_text())
valid = [m for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if m.get("type") == "valid"]
training = {"precision": config["train"].get("precision"), "epochs": valid[-1]["epoch"],
            "best_epoch": max(valid, key=lambda m: m["valid_bleu"])["epoch"], "minutes": round(valid[-1]["elapsed"] / 60, 1)}
out.parent.mkdir(parents=True, exist_ok=True)
result = {"config": f"configs/{config['name']}.yaml", "run": str(run), "training": training, "scores": scores}
out.write_text(json.dumps(result, indent=1) + "\n")
print(out, training, {k: v["bleu"] for k, v in scores.items()})
PY
rm -rf "$TMP"
