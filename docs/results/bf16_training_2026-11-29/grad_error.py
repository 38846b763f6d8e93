"""How far bf16 autocast's gradients are from fp32's, per parameter, on the peer-shape model after 30 training steps
(eval mode: no dropout), with autocast's weight cache on and off and the attention softmax in bf16 (as before
2026-11-29) or fp32. python docs/results/bf16_training_2026-11-29/grad_error.py   (NMT_DATA_DIR set)"""

import tempfile
import time
from pathlib import Path

import torch

from nmt.config import load_config
from nmt.data import collate, make_batches
from nmt.loss import sequence_loss
from nmt.runtime import malloc_defaults
from nmt.training import Run

malloc_defaults()
config = load_config("configs/peer_shape.yaml", ["data.path=/work/shared/data/multi30k"])
with tempfile.TemporaryDirectory() as tmp:
    run = Run(config, Path(tmp) / "run", show_progress=False)
    c = run.data.train
    batches = make_batches(
        c.src_lengths, c.tgt_lengths, run.data.train_indices, config.train.batch_tokens, shuffle=True, seed=1
    )
    for b in batches[:30]:
        run.train_step(b, 1e-3)  # move off the init a little
    model = run.model
    model.eval()  # no dropout: same function in each precision
    batch = collate(c, batches[40])
    import nmt.attention as A

    def attend16(scores, mask, values):  # the softmax as it ran before 2026-11-29: in bf16 under autocast
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        return torch.bmm(torch.softmax(scores, dim=-1), values)

    fp32_softmax = A._attend

    def grads(mode):
        A._attend = fp32_softmax if "sm32" in mode else attend16
        model.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32", cache_enabled="nocache" not in mode)
        t = time.perf_counter()
        with ctx:
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss, _ = sequence_loss(logits, batch.tgt_out, 0.0)
        loss.backward()
        dt = time.perf_counter() - t
        return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}, dt

    ref, t0 = grads("fp32")
    for mode in ("cache", "nocache", "cache sm32", "nocache sm32"):
        g, dt = grads(mode)
        print(mode, f"{dt:.2f}s (fp32 {t0:.2f}s)")
        for n in ref:
            if n in (
                "decoder.rnn.weight_hh_l1",
                "decoder.attention.key_proj.weight",
                "encoder.rnn.weight_hh_l0",
                "encoder.rnn.weight_ih_l1",
                "decoder.readout.weight",
                "encoder.embedding.weight",
            ):
                e = (g[n] - ref[n]).norm() / ref[n].norm()
                print(f"  {n:40s} rel err {e:.4f}")
    run.dist.close()
