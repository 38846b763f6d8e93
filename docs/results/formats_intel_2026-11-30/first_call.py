"""An Int8Matrix's first call at a new row count (oneDNN creates a primitive per shape) against its second, through
oneDNN and through `torch._int_mm`; needs onednn_qlinear.diff applied."""

import time

import torch

from nmt.int8 import Int8Matrix

torch.set_num_threads(2)
matrix = Int8Matrix(torch.randn(2048, 512))
packed = matrix.packed
for side, row_counts in (("onednn", range(300, 340)), ("int_mm", range(400, 440))):
    matrix.packed = packed if side == "onednn" else None
    first, second = [], []
    for rows in row_counts:
        x = torch.randn(rows, 512)
        for times in (first, second):
            start = time.perf_counter()
            matrix(x)
            times.append(time.perf_counter() - start)
    first_us, second_us = sorted(first)[20] * 1e6, sorted(second)[20] * 1e6  # medians
    print(f"{side}: first call at a new row count {first_us:.0f} us, second {second_us:.0f} us")
