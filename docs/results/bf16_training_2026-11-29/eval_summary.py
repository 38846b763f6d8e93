"""Gather `nmt evaluate --json` files of a folder into one JSON (scores, signatures, settings; no hypotheses):
python eval_summary.py FOLDER OUT.json   (used by evalM.sh and evalN.sh)"""

import json
import pathlib
import sys

out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    d = json.loads(p.read_text())
    out[p.stem] = {k: d[k] for k in ("model", "data", "beam_size", "dtype", "length_penalty", "sentences", "seconds")}
    out[p.stem].update(
        bleu=d["bleu"]["score"], chrf=d["chrf"]["score"], ter=d["ter"]["score"], signature=d["bleu"]["signature"]
    )
    print(p.stem, d["bleu"]["score"])
pathlib.Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
