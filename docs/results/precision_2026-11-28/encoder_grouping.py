"""Encoder LSTM under bf16 autocast: packed (torch's per-step cell) vs grouped by length (oneDNN, exact)."""

import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

torch.manual_seed(0)
torch.set_num_threads(2)
rnn = torch.nn.LSTM(256, 256, num_layers=2, bidirectional=True, batch_first=True)
B = 189
lens = torch.randint(8, 31, (B,))
L = int(lens.max())
x = torch.randn(B, L, 256, requires_grad=True)


def packed():
    out, (h, c) = rnn(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
    return out, h, c


def grouped():
    outs, idxs, hh, cc = [], [], [], []
    for n in lens.unique().tolist():
        idx = (lens == n).nonzero().squeeze(1)
        o, (h, c) = rnn(x[idx, :n])
        outs.append((idx, n, o))
        hh.append(h)
        cc.append(c)
        idxs.append(idx)
    order = torch.cat(idxs)
    out = torch.zeros(B, L, 512, dtype=outs[0][2].dtype)
    for idx, n, o in outs:
        out = out.index_put((idx.unsqueeze(1), torch.arange(n).unsqueeze(0)), o)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(B)
    return out, torch.cat(hh, 1)[:, inv], torch.cat(cc, 1)[:, inv]


with torch.no_grad():
    a, b = packed(), grouped()
    print("max diff out/h/c (fp32):", [float((p.float() - q.float()).abs().max()) for p, q in zip(a, b, strict=False)])
for amp in (False, True):
    for name, fn in (("packed", packed), ("grouped", grouped)):
        ts = []
        for _r in range(3):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                o, h, c = fn()
            (o.float().sum() + h.float().sum() + c.float().sum()).backward()
            ts.append(time.perf_counter() - t)
        print(
            "bf16" if amp else "fp32",
            name,
            "min s",
            round(min(ts), 3),
            "distinct lengths",
            len(lens.unique()),
            flush=True,
        )
