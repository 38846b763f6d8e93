"""The log-softmax of one beam-5 step's bf16 logits (320 rows x 8,000) into fp32, and its parts; one thread,
milliseconds per call, best of 5 x 20. Run it with and without MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ /
MALLOC_ARENA_MAX set to see how much is the allocator. usage: python lsm.py"""

import time

import torch

torch.set_num_threads(1)
logits = torch.randn(320, 8000).to(torch.bfloat16)
h, w = torch.randn(320, 256).to(torch.bfloat16), torch.randn(8000, 256).to(torch.bfloat16)  # the output layer
torch.nn.functional.linear(h, w)
as_fp32 = logits.float()
ops = {
    "log_softmax bf16 -> fp32 (as the search does)": lambda: torch.log_softmax(logits, -1, dtype=torch.float32),
    "convert, then log_softmax": lambda: torch.log_softmax(logits.float(), -1),
    "log_softmax of fp32 input": lambda: torch.log_softmax(as_fp32, -1),
    "log_softmax in bf16": lambda: torch.log_softmax(logits, -1),
}
for name, op in ops.items():
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            op()
        best = min(best, (time.perf_counter() - t) / 20 * 1e3)
    print(f"{name}: {best:.2f} ms")
