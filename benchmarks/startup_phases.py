"""Where a translation's time goes, in one process: imports, model load, then three passes over the test set.

python benchmarks/startup_phases.py RUN DTYPE BEAM   (NMT_DATA_DIR: the folder of test_2016_flickr.de)
"""

import os
import sys
import time

start = time.perf_counter()
from nmt.prediction import Translator  # noqa: E402  (timed: the imports are what this measures)
from nmt.runtime import malloc_defaults  # noqa: E402

malloc_defaults()
imported = time.perf_counter()
run, dtype, beam = sys.argv[1], sys.argv[2], int(sys.argv[3])
translator = Translator.from_run_dir(run, dtype=dtype)
loaded = time.perf_counter()
data = os.environ.get("NMT_DATA_DIR", "../shared/data/multi30k")
src = open(os.path.join(data, "test_2016_flickr.de")).read().splitlines()
for i in range(3):
    t = time.perf_counter()
    translator.translate(src, beam_size=beam)
    print(f"pass {i}: {time.perf_counter() - t:.3f} s", end="; ")
print(f"imports {imported - start:.3f} s, load {loaded - imported:.3f} s")
