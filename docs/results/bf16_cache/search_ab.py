"""A/B of two versions of nmt/search.py's step helpers in one process (docs/performance.md, "Search: fewer passes
over the vocabulary").

    python search_ab.py RUN_DIR DTYPE OLD_SEARCH_PY     # OLD_SEARCH_PY: the old nmt/search.py, e.g. from git show

Translates test_2016_flickr at beam 5, one thread, old and new alternating twice; checks the outputs are identical.
"""

import importlib.util
import os
import sys
import time

import torch

import nmt.search as new
from nmt.data import read_lines
from nmt.prediction import Translator

torch.set_num_threads(1)
spec = importlib.util.spec_from_file_location("old_search", sys.argv[3])
old = importlib.util.module_from_spec(spec)
sys.modules["old_search"] = old
spec.loader.exec_module(old)
versions = {"new": (new._force_eos, new._step_log_probs), "old": (old._force_eos, old._step_log_probs)}
translator = Translator.from_run_dir(sys.argv[1], dtype=sys.argv[2])
sources = read_lines(f"{os.environ.get('NMT_DATA_DIR', '../shared/data/multi30k')}/test_2016_flickr.de")
outputs = {}
for name in ["old", "new", "old", "new"]:
    new._force_eos, new._step_log_probs = versions[name]
    start = time.perf_counter()
    results = translator.translate(sources, beam_size=5)
    print(name, f"{time.perf_counter() - start:.2f} s", flush=True)
    outputs[name] = [(r[0].text, r[0].score) for r in results]
print("identical:", outputs["old"] == outputs["new"])
