"""bf16 autocast gradients against fp32, the 8 weights furthest off, for any config after N training steps (eval mode):
python docs/results/bf16_training_2026-11-29/grad_error_by_weight.py configs/multi30k_de_en.yaml 100
"""

import sys
import tempfile
from pathlib import Path

import torch

from nmt.config import load_config
from nmt.data import collate, make_batches
from nmt.loss import sequence_loss
from nmt.runtime import malloc_defaults
from nmt.training import Run

malloc_defaults()
config = load_config(sys.argv[1], ["data.path=/work/shared/data/multi30k"])
with tempfile.TemporaryDirectory() as tmp:
    run = Run(config, Path(tmp) / "run", show_progress=False)
    c = run.data.train
    batches = make_batches(
        c.src_lengths, c.tgt_lengths, run.data.train_indices, config.train.batch_tokens, shuffle=True, seed=1
    )
    for b in batches[: int(sys.argv[2])]:
        run.train_step(b, 1e-3)
    model = run.model
    model.eval()
    batch = collate(c, batches[-1])

    def grads(mode):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32", cache_enabled="nocache" not in mode):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, _ = sequence_loss(logits, batch.tgt_out, 0.0)
        loss.backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

    ref = grads("fp32")
    for mode in ("cache", "nocache"):
        g = grads(mode)
        errs = sorted(((((g[n] - ref[n]).norm() / ref[n].norm()).item(), n) for n in ref), reverse=True)
        print(mode, " ".join(f"{n}={e:.4f}" for e, n in errs[:8]))
    run.dist.close()
