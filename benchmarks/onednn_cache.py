"""Speed and memory of one search precision with oneDNN's primitive caches capped at CAP (docs/performance.md).

    python benchmarks/onednn_cache.py RUN_DIR DTYPE CAP   # CAP 1024: the libraries' default; one process each

300 server-like batches (1-12 random validation sentences, beam 1, 2, 4 or 5), then the first 500 test sentences in
the CLI's batches at beam 5; prints seconds and resident-memory growth of each part.
"""

import os
import random
import sys
import time

import torch

torch.set_num_threads(1)
os.environ["LRU_CACHE_CAPACITY"] = os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = sys.argv[3]  # before first use

from nmt.data import read_lines  # noqa: E402
from nmt.prediction import Translator  # noqa: E402

data = os.environ.get("NMT_DATA_DIR", "../shared/data/multi30k")
translator = Translator.from_run_dir(sys.argv[1], dtype=sys.argv[2])
valid, test = read_lines(f"{data}/val.de"), read_lines(f"{data}/test_2016_flickr.de")


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


rng = random.Random(0)
r0, t0 = resident_mb(), time.perf_counter()
for _ in range(300):
    translator.translate(rng.sample(valid, rng.randint(1, 12)), beam_size=rng.choice([1, 2, 4, 5]))
r1, t1 = resident_mb(), time.perf_counter()
translator.translate(test[:500], beam_size=5)
r2, t2 = resident_mb(), time.perf_counter()
print(
    f"{sys.argv[2]} cap {sys.argv[3]}: server-like {t1 - t0:.1f} s, +{r1 - r0:.0f} MB; "
    f"test[:500] beam 5 {t2 - t1:.1f} s, +{r2 - r0:.0f} MB after both"
)
