"""GFLOP/s of the output layer's shape (rows x K -> 8,000) in fp32, bf16 under autocast and dynamic int8, 2 threads.

python docs/results/search_2026-11-29/output_layer.py
"""

import time
import warnings

import torch

warnings.simplefilter("ignore")  # torch deprecates the quantized tensor constructors quantize_dynamic uses
torch.set_num_threads(2)


def seconds(f, n=30):
    for _ in range(5):
        f()
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n


for k in (256, 512):
    linear = torch.nn.Linear(k, 8000)
    quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, torch.qint8)
    for rows in (64, 256, 640):
        x = torch.randn(rows, k)
        flops = 2 * rows * k * 8000
        with torch.inference_mode():
            fp32 = seconds(lambda: linear(x))  # noqa: B023
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = seconds(lambda: linear(x))  # noqa: B023
            int8 = seconds(lambda: quantized(x))  # noqa: B023
        print(
            f"{rows} x {k} -> 8000: fp32 {flops / fp32 / 1e9:.0f}, bf16 {flops / bf16 / 1e9:.0f}, "
            f"int8 {flops / int8 / 1e9:.0f} GFLOP/s"
        )
