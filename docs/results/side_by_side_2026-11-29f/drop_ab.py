"""Greedy search time by `nmt.search.DROP_FRACTION` (10**9: drop ended rows at once, the old behaviour), one
process, four rounds alternating: python docs/results/side_by_side_2026-11-29f/drop_ab.py RUN [BEAM]
"""

import sys
import time

import nmt.search
from nmt.prediction import Translator
from nmt.runtime import malloc_defaults

malloc_defaults()
translator = Translator.from_run_dir(sys.argv[1], dtype="auto")
beam = int(sys.argv[2]) if len(sys.argv) > 2 else 1
src = open("/tmp/peers/data/raw/test_2016_flickr.de").read().splitlines()
translator.translate(src[:200], beam_size=beam)
times: dict[int, list[float]] = {}
for _ in range(4):
    for fraction in (10**9, 8, 4, 16):
        nmt.search.DROP_FRACTION = fraction
        start = time.perf_counter()
        translator.translate(src, beam_size=beam)
        times.setdefault(fraction, []).append(time.perf_counter() - start)
for fraction, t in times.items():
    print(f"DROP_FRACTION {fraction}: best {min(t):.3f} s, median {sorted(t)[len(t) // 2]:.3f} s")
