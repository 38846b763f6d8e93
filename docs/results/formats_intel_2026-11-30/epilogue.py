"""One row-wise int8 product with its scales and bias: `torch._int_mm` then the scales (as `nmt.int8` does) against
oneDNN's int8 matmul with the channel scales in its epilogue, then the row scales and bias; same shapes each call.
    GOMP_SPINCOUNT=10000 .venv/bin/python docs/results/formats_intel_2026-11-30/epilogue.py"""

import time

import torch

torch.manual_seed(0)
torch.set_num_threads(2)


def ms(fn, runs: int = 50) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1e3


def compare(rows: int, k: int, n: int) -> None:
    x, w, bias = torch.randn(rows, k), torch.randn(n, k), torch.randn(n)
    w_scale = w.abs().amax(1, keepdim=True) / 127
    w_int8 = (w / w_scale).round().to(torch.int8)
    w_t, w_scale = w_int8.t().contiguous(), w_scale.view(-1)
    x_scale = x.abs().amax(1, keepdim=True) / 127
    x_int8 = (x / x_scale).round().to(torch.int8)
    x_uint8 = (x_int8.to(torch.int16) + 128).to(torch.uint8)
    packed = torch.ops.onednn.qlinear_prepack(w_int8, [1, k])
    zero_points = torch.zeros(n, dtype=torch.long)

    def int_mm():
        out = torch._int_mm(x_int8, w_t).float().mul_(x_scale)
        return torch.addcmul(bias, out, w_scale, out=out)

    def onednn():
        out = torch.ops.onednn.qlinear_pointwise(
            x_uint8, 1.0, 128, packed, w_scale, zero_points, None, 1.0, 0, torch.float32, "none", [], ""
        )
        return torch.addcmul(bias, out, x_scale, out=out)

    difference = (int_mm() - onednn()).abs().max().item()
    print(
        f"({rows}, {k}) x ({k}, {n}): _int_mm + scales {ms(int_mm):.2f} ms, oneDNN + row scales {ms(onednn):.2f} ms "
        f"(largest difference {difference:.1e})",
        flush=True,
    )


for shape in [(640, 512, 8000), (640, 512, 2048), (128, 512, 8000), (640, 1024, 2048)]:
    compare(*shape)
