"""Matrix-product throughput per number format on this CPU (torch, 2 threads): fp32 (MKL), bf16 and fp16 (oneDNN).

    GOMP_SPINCOUNT=10000 .venv/bin/python docs/results/formats_intel_2026-11-30/formats.py
Shapes: a square, the peer model's output layer at 640 search rows, a training step's LSTM input projection (4,000
tokens), a decoder step's, and the attention's.
"""

import time

import torch

torch.set_num_threads(2)


def gflops(dtype: torch.dtype, m: int, k: int, n: int, seconds: float = 0.5) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - start) / 1e9


for shape in [(1024, 1024, 1024), (640, 512, 8000), (4000, 512, 2048), (128, 768, 2048), (4000, 512, 512)]:
    rates = {str(d).split(".")[1]: round(gflops(d, *shape)) for d in (torch.float32, torch.bfloat16, torch.float16)}
    print(shape, rates, flush=True)
