"""Search only, in one process: every Int8Matrix through oneDNN (`packed`) or `torch._int_mm` (`packed = None`),
alternating; needs onednn_qlinear.diff applied.   python in_process.py MODEL_DIR BEAM"""

import os
import sys
import time

import torch

from nmt.int8 import Int8Matrix
from nmt.prediction import Translator
from nmt.runtime import malloc_defaults, mkl_defaults

malloc_defaults()
mkl_defaults()
torch.set_num_threads(2)
model, beam = sys.argv[1], int(sys.argv[2])
translator = Translator.from_run_dir(model, dtype="int8")
matrices = [m for m in translator.model.modules() if isinstance(m, Int8Matrix)]
packed = [m.packed for m in matrices]
data = os.environ.get("NMT_DATA_DIR", "/work/shared/data/multi30k")
source = open(f"{data}/test_2016_flickr.de").read().splitlines()
outputs = {}
for round_ in range(3):
    for side in ("int_mm", "onednn"):
        for matrix, weight in zip(matrices, packed, strict=True):
            matrix.packed = weight if side == "onednn" else None
        start = time.perf_counter()
        outputs[side] = translator.translate(source, beam_size=beam)
        print(f"beam {beam} {side} round {round_}: {time.perf_counter() - start:.3f} s", flush=True)
print("same translations:", outputs["int_mm"] == outputs["onednn"])
