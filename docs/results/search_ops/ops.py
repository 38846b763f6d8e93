"""What one beam-5 step spends on the (rows, vocab) tensor, beside the output layer's matmul: 64 sentences x beam 5
= 320 rows, vocabulary 8,000, bf16 logits, one thread; milliseconds per call, best of 5 x 20 calls.
usage: python ops.py"""

import time

import torch

torch.set_num_threads(1)
m, k, V = 64, 5, 8000
logits = torch.randn(m * k, V).to(torch.bfloat16)
alive = torch.randn(m, k)
h, W = torch.randn(m * k, 256).to(torch.bfloat16), torch.randn(V, 256).to(torch.bfloat16)
lp = torch.log_softmax(logits, -1, dtype=torch.float32)
cand = (alive.unsqueeze(-1) + lp.view(m, k, V)).view(m, k * V)


def today():  # nmt.search.beam_search: log-softmax, add the beam scores, top 2k over k * vocab per sentence
    scores = torch.log_softmax(logits, -1, dtype=torch.float32)
    return (alive.unsqueeze(-1) + scores.view(m, k, V)).view(m, k * V).topk(2 * k, -1)


def prepruned():  # top 2k per row first (exact), then top 2k over k * 2k per sentence
    values, _ = torch.log_softmax(logits, -1, dtype=torch.float32).topk(2 * k, -1)
    return (alive.unsqueeze(-1) + values.view(m, k, 2 * k)).view(m, 2 * k * k).topk(2 * k, -1)


ops = {
    "output layer matmul": lambda: torch.nn.functional.linear(h, W),
    "whole step today": today,
    "pre-pruned per row": prepruned,
    "log_softmax bf16 -> fp32": lambda: torch.log_softmax(logits, -1, dtype=torch.float32),
    "add beam scores": lambda: (alive.unsqueeze(-1) + lp.view(m, k, V)).view(m, k * V),
    "topk 2k over k * vocab": lambda: cand.topk(2 * k, -1),
    "max over vocab": lambda: lp.max(-1),
}
best = {}
for _ in range(5):
    for name, op in ops.items():
        t = time.perf_counter()
        for _ in range(20):
            op()
        best[name] = min(best.get(name, 1e9), (time.perf_counter() - t) / 20 * 1e3)
for name, ms in best.items():
    print(f"{name}: {ms:.2f} ms")
print("pre-pruned = today (top values):", torch.equal(today()[0], prepruned()[0]))
