"""Search time of the 1,000 test sentences at several `decode.batch_rows` (hypotheses per batch), three rounds in
one process.   python batch_rows.py MODEL_DIR DTYPE BEAM"""

import os
import sys
import time

import torch

from nmt.prediction import Translator
from nmt.runtime import malloc_defaults, mkl_defaults

malloc_defaults()
mkl_defaults()
torch.set_num_threads(2)
model, dtype, beam = sys.argv[1], sys.argv[2], int(sys.argv[3])
translator = Translator.from_run_dir(model, dtype=dtype)
data = os.environ.get("NMT_DATA_DIR", "/work/shared/data/multi30k")
source = open(f"{data}/test_2016_flickr.de").read().splitlines()
seconds: dict[int, list[float]] = {}
for _ in range(3):
    for rows in (160, 320, 640, 1280):
        start = time.perf_counter()
        translator.translate(source, beam_size=beam, batch_size=max(1, rows // beam))
        seconds.setdefault(rows, []).append(round(time.perf_counter() - start, 3))
print(dtype, "beam", beam, "seconds by batch_rows:", seconds)
