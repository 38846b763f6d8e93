"""Search-only time and BLEU of one checkout on the 1,000 test sentences (beam 5, then greedy), per precision.
Run it with each checkout in turn to compare them on one machine:

PYTHONPATH=CHECKOUT python docs/results/bf16_training_2026-11-29/search_ab.py RUN DTYPE[,DTYPE...] [ROUNDS]
"""

import sys
import time

import sacrebleu

from nmt.prediction import Translator
from nmt.runtime import malloc_defaults

malloc_defaults()
src = open("/tmp/peers/data/raw/test_2016_flickr.de").read().splitlines()
ref = open("/tmp/peers/data/raw/test_2016_flickr.en").read().splitlines()
run, dtypes = sys.argv[1], sys.argv[2].split(",")
for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
    for dtype in dtypes:
        translator = Translator.from_run_dir(run, dtype=dtype)
        translator.translate(src[:50], beam_size=5)
        for beam in (5, 1):
            start = time.perf_counter()
            hyps = [t[0].text for t in translator.translate(src, beam_size=beam)]
            seconds = time.perf_counter() - start
            print(dtype, beam, f"{seconds:.3f} s", f"BLEU {sacrebleu.corpus_bleu(hyps, [ref]).score:.2f}", flush=True)
