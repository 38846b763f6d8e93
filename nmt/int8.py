"""Row-wise dynamic int8 for search: linear layers and RNNs whose answer for a row does not depend on its batch.

torch's dynamic quantization (`quantize_dynamic`, FBGEMM) scales a layer's whole input by its largest value, so a
sentence's answer moved with the batch it was searched in. Here each input row gets its own scale (its largest
absolute value / 127) and each weight row (output channel) its own, the product runs in integers
(`torch._int_mm`, exact int32 sums, so the same for a row in any batch) and is scaled back per row and channel:
batch-invariant like fp32, and closer to fp32 than a per-batch scale.

The RNN modules replace `nn.LSTM`, `nn.GRU` and `nn.RNN` in the same call (input, padded or packed, and initial
state in; outputs and final states out; `nmt.rnn_loop` runs them), so the decoder step is the same code in every
precision. Their cells compute tanh as 2 sigmoid(2x) - 1: torch 2.13's CPU `tanh` is not vectorized
(docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn

from nmt.rnn_loop import RNNLoop, rnn_mode

QMAX = 127


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (rows, k) float -> int8 values (rows, k) and fp32 scales (rows, 1) with x ~ values * scales."""
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp_min_(1e-12).div_(QMAX)
    return torch.div(x, scale).round_().to(torch.int8), scale


class Int8Matrix(nn.Module):
    """A weight (out, in) stored as int8 (in, out) with one scale per output channel; `x @ W.T (+ bias)`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        values, scale = quantize_rows(weight.detach().float())  # (out, in), (out, 1)
        self.register_buffer("values", values.t().contiguous())  # (in, out)
        self.register_buffer("scale", scale.view(-1))  # (out,)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., in) -> x W.T + (bias or `add`, broadcastable to the result) (..., out) fp32; no gradient (search
        only)."""
        x = x.detach()
        lead = x.shape[:-1]
        values, row_scale = quantize_rows(x.reshape(-1, x.size(-1)))
        out = torch._int_mm(values, self.values).float().mul_(row_scale)  # (rows, out)
        add = self.bias if add is None else add
        out = out.mul_(self.scale) if add is None else torch.addcmul(add, out, self.scale, out=out)
        return out.view(*lead, out.size(-1))


class Int8Linear(Int8Matrix):
    """`nn.Linear` in row-wise int8."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear.weight, linear.bias)


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


class Int8RNN(RNNLoop, nn.Module):
    """`nn.LSTM`, `nn.GRU` or `nn.RNN` (batch_first, any layers and directions; eval only) in row-wise int8."""

    def __init__(self, rnn: nn.RNNBase):
        nn.Module.__init__(self)
        self.mode = rnn_mode(rnn)
        self.layers, self.directions, self.hidden = rnn.num_layers, 2 if rnn.bidirectional else 1, rnn.hidden_size
        gates = rnn.weight_ih_l0.size(0)  # 4H (LSTM), 3H (GRU), H (RNN)
        scale = torch.ones(gates)
        if self.mode == "lstm":
            scale[2 * self.hidden : 3 * self.hidden] = 2  # the cell input g: tanh(g) = 2 sigmoid(2g) - 1
        self.inputs, self.recurrent = nn.ModuleList(), nn.ModuleList()
        for layer in range(self.layers):
            for direction in range(self.directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                w_ih, w_hh = getattr(rnn, "weight_ih" + sfx), getattr(rnn, "weight_hh" + sfx)
                b_ih, b_hh = getattr(rnn, "bias_ih" + sfx, None), getattr(rnn, "bias_hh" + sfx, None)
                b_ih = torch.zeros(gates) if b_ih is None else b_ih.detach().float()
                b_hh = torch.zeros(gates) if b_hh is None else b_hh.detach().float()
                if self.mode == "gru":  # b_hn stays inside r * (W_hn h + b_hn)
                    b_ih = b_ih.clone()
                    b_ih[: 2 * self.hidden] += b_hh[: 2 * self.hidden]
                    b_hh = torch.cat([torch.zeros(2 * self.hidden), b_hh[2 * self.hidden :]])
                else:
                    b_ih, b_hh = b_ih + b_hh, None
                s = scale.unsqueeze(1)
                self.inputs.append(Int8Matrix(w_ih.detach() * s, b_ih * scale))
                self.recurrent.append(Int8Matrix(w_hh.detach() * s, None if b_hh is None else b_hh * scale))

    def _project(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self.inputs[index](x)

    def _cell(
        self, index: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        H, recurrent = self.hidden, self.recurrent[index]
        if self.mode == "lstm":
            gates = torch.sigmoid_(recurrent(h, add=x))  # (rows, 4H): i, f, sigmoid(2g), o
            i, f, g, o = gates.split(H, dim=1)
            c = torch.addcmul(f * c, i, g.mul(2).sub_(1))
            return o * _tanh(c), c
        if self.mode == "gru":
            rec = recurrent(h)  # (rows, 3H): W_hr h, W_hz h, W_hn h + b_hn
            rz = torch.sigmoid_(rec[:, : 2 * H] + x[:, : 2 * H])
            r, z = rz.split(H, dim=1)
            n = _tanh(torch.addcmul(x[:, 2 * H :], r, rec[:, 2 * H :]))
            return torch.lerp(n, h, z), None  # (1 - z) n + z h
        return _tanh(recurrent(h, add=x)), None


def quantize(model: nn.Module, keep: tuple[str, ...] = ()) -> nn.Module:
    """Replace every `nn.Linear` and RNN in `model` (in place) by its row-wise int8 form, except the modules named
    in `keep`; returns `model`."""
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if (f"{name}.{child_name}" if name else child_name) in keep:
                continue
            if isinstance(child, nn.Linear):
                setattr(module, child_name, Int8Linear(child))
            elif isinstance(child, nn.RNNBase):
                setattr(module, child_name, Int8RNN(child))
    return model
