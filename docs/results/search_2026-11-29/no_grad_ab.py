"""int8 and fp32 search under inference_mode (what Translator uses for them) against no_grad (what it uses for the
autocast precisions), alternating in one process, 3 rounds: python docs/results/search_2026-11-29/no_grad_ab.py"""

import time

import nmt.prediction as prediction
from nmt.prediction import Translator
from nmt.runtime import malloc_defaults

malloc_defaults()
src = open("/tmp/peers/data/raw/test_2016_flickr.de").read().splitlines()
original = prediction.uses_autocast
for run, dtype in [("/tmp/r21/I", "int8"), ("/tmp/peers/runs/nmt_peer", "int8"), ("/tmp/r21/I", "fp32")]:
    translator = Translator.from_run_dir(run, dtype=dtype)
    translator.translate(src[:200], beam_size=5)
    times = {"inference_mode": [], "no_grad": []}
    for _ in range(3):
        for mode in times:
            # Translator picks no_grad where uses_autocast says so; autocast itself is decided in nmt.precision
            prediction.uses_autocast = original if mode == "inference_mode" else (lambda _: True)
            for beam in (5, 1):
                start = time.perf_counter()
                translator.translate(src, beam_size=beam)
                times[mode].append((beam, round(time.perf_counter() - start, 3)))
    prediction.uses_autocast = original
    for mode, values in times.items():
        b5 = sorted(s for b, s in values if b == 5)
        b1 = sorted(s for b, s in values if b == 1)
        print(run, dtype, mode, "beam 5", b5, "greedy", b1)
