"""Search-only seconds and the best hypothesis of every test sentence, for some models and precisions, in one process.

python docs/results/search_2026-11-29/hyps.py OUT.json RUN[,RUN...] DTYPE[,DTYPE...]   (beam 5 and greedy each)
Run it on two checkouts (PYTHONPATH=CHECKOUT) and compare the two files with compare.py.
"""

import json
import sys
import time

from nmt.prediction import Translator
from nmt.runtime import malloc_defaults

malloc_defaults()
TEST = "/tmp/peers/data/raw/test_2016_flickr.de"
out = {}
src = open(TEST).read().splitlines()
for run in sys.argv[2].split(","):
    for dtype in sys.argv[3].split(","):
        translator = Translator.from_run_dir(run, dtype=dtype)
        for beam in (5, 1):
            start = time.perf_counter()
            results = translator.translate(src, beam_size=beam)
            seconds = time.perf_counter() - start
            out[f"{run} {dtype} {beam}"] = [[r[0].text, r[0].score] for r in results]
            print(run, dtype, beam, round(seconds, 3), "s", flush=True)
json.dump(out, open(sys.argv[1], "w"))
