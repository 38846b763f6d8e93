"""Which ops run in which dtype under CPU bf16 autocast (training step of the peer shape, small batch):
a TorchDispatchMode sees every aten op after autocast has cast its inputs, forward and backward."""

import collections
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.config import load_config
from nmt.model import Seq2Seq

torch.manual_seed(0)
torch.set_num_threads(2)
m = Seq2Seq(load_config("configs/peer_shape.yaml").model, 8000, 8000)
B, S, T = 32, 12, 12
src = torch.randint(4, 8000, (B, S))
lens = torch.randint(6, S + 1, (B,))
lens[0] = S
tgt = torch.randint(4, 8000, (B, T))
KEEP = (
    "mkldnn_rnn_layer",
    "mkldnn_rnn_layer_backward",
    "mm",
    "addmm",
    "bmm",
    "_softmax",
    "_log_softmax",
    "tanh",
    "lstm",
    "embedding",
    "_softmax_backward_data",
    "embedding_dense_backward",
    "_thnn_fused_lstm_cell",
    "quantized_lstm",
    "linear_dynamic",
)


class Log(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = collections.defaultdict(collections.Counter)
        self.t = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t0
        ts = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        dts = "/".join(sorted({str(a.dtype).replace("torch.", "") for a in ts})) or "-"
        self.seen[name][dts] += 1
        self.t[name] += dt
        return out


def step(amp):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = m(src, lens, tgt)
    torch.log_softmax(out.float(), -1).sum().backward()


step(True)
log = Log()
with log:
    step(True)
tot = sum(log.t.values())
for name, c in sorted(log.seen.items(), key=lambda x: -log.t[x[0]])[:18]:
    print(f"{name:28s} {100 * log.t[name] / tot:5.1f}% of op time  {dict(c)}")
print("--- encoder alone (packed), forward only")
log = Log()
with log, torch.autocast("cpu", dtype=torch.bfloat16):
    m.encoder(src, lens)
for name, c in sorted(log.seen.items(), key=lambda x: -log.t[x[0]])[:10]:
    print(f"{name:28s} {dict(c)}")
print("--- encoder, lengths all equal (could skip packing)")
log = Log()
with log, torch.autocast("cpu", dtype=torch.bfloat16):
    m.encoder.rnn(m.encoder.embedding(src))
for name, c in sorted(log.seen.items(), key=lambda x: -log.t[x[0]])[:10]:
    print(f"{name:28s} {dict(c)}")
