"""Row-wise dynamic int8 for search: linear layers and RNNs whose answer for a row does not depend on its batch.

torch's dynamic quantization (`quantize_dynamic`, FBGEMM) scales a layer's whole input by its largest value, so a
sentence's answer moved with the batch it was searched in. Here each input row gets its own scale (its largest
absolute value / 127) and each weight row (output channel) its own, the product runs in integers
(`torch._int_mm`, exact int32 sums, so the same for a row in any batch) and is scaled back per row and channel:
batch-invariant like fp32, and closer to fp32 than a per-batch scale.

The RNN modules replace `nn.LSTM`, `nn.GRU` and `nn.RNN` in the same call (input, padded or packed, and initial
state in; outputs and final states out), so the decoder step is the same code in every precision. Their cells
compute tanh as 2 sigmoid(2x) - 1: torch 2.13's CPU `tanh` is not vectorized (docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from nmt.decoder import Hidden

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


class Int8RNN(nn.Module):
    """`nn.LSTM`, `nn.GRU` or `nn.RNN` (batch_first, any layers and directions; eval only) in row-wise int8."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        if not rnn.batch_first or getattr(rnn, "proj_size", 0):
            raise ValueError("Int8RNN takes batch_first RNNs without projections")
        self.mode = {nn.LSTM: "lstm", nn.GRU: "gru"}.get(type(rnn), "rnn")
        if self.mode == "rnn" and rnn.nonlinearity != "tanh":
            raise ValueError("Int8RNN takes tanh RNNs")
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

    def _cell(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, recurrent: Int8Matrix
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: this step's input projection (rows, gates); h, c (rows, hidden) -> new h, c."""
        H = self.hidden
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

    def _run(
        self,
        x: torch.Tensor,
        batch_sizes: list[int],
        h: torch.Tensor,
        c: torch.Tensor | None,
        index: int,
        reverse: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One layer and direction over packed rows x (sum of batch_sizes, in), time-major: outputs and final h, c
        (a row's state stays as it was after its last step)."""
        proj = self.inputs[index](x)  # (total, gates)
        starts = [0]
        for size in batch_sizes[:-1]:
            starts.append(starts[-1] + size)
        steps = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
        outs = []
        for t in steps:
            rows, start = batch_sizes[t], starts[t]
            part = slice(None, rows) if rows < h.size(0) else slice(None)
            new_h, new_c = self._cell(
                proj[start : start + rows], h[part], None if c is None else c[part], self.recurrent[index]
            )
            outs.append(new_h)
            if rows < h.size(0):  # the rows that have ended keep their state
                h = torch.cat([new_h, h[rows:]])
                c = None if c is None else torch.cat([new_c, c[rows:]])
            else:
                h, c = new_h, new_c
        if reverse:
            outs.reverse()
        return (outs[0] if len(outs) == 1 else torch.cat(outs)), h, c

    def forward(self, input: torch.Tensor | PackedSequence, hx: Hidden | None = None) -> tuple[object, Hidden]:
        """As the RNN it replaces: (batch, steps, in) or packed input, initial state -> outputs, final state."""
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes = input.data, input.batch_sizes.tolist()
            batch = batch_sizes[0]
        else:  # (batch, steps, in): the same as a packed batch whose rows all have every step
            batch, steps = input.shape[:2]
            data, batch_sizes = input.transpose(0, 1).reshape(batch * steps, -1), [batch] * steps
        lstm = self.mode == "lstm"
        shape = (self.layers * self.directions, batch, self.hidden)
        if hx is None:
            h0 = data.new_zeros(shape, dtype=torch.float32)
            c0 = h0 if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
            if packed and input.sorted_indices is not None:
                h0 = h0.index_select(1, input.sorted_indices)
                c0 = None if c0 is None else c0.index_select(1, input.sorted_indices)
        finals_h, finals_c = [], []
        for layer in range(self.layers):
            outs = []
            for direction in range(self.directions):
                i = layer * self.directions + direction
                out, h, c = self._run(
                    data, batch_sizes, h0[i].float(), None if c0 is None else c0[i].float(), i, reverse=direction == 1
                )
                outs.append(out)
                finals_h.append(h)
                finals_c.append(c)
            data = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
        h_n = torch.stack(finals_h)
        c_n = torch.stack(finals_c) if lstm else None
        if packed:
            if input.unsorted_indices is not None:
                h_n = h_n.index_select(1, input.unsorted_indices)
                c_n = None if c_n is None else c_n.index_select(1, input.unsorted_indices)
            output = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        else:
            output = data.view(steps, batch, -1).transpose(0, 1)
        return output, ((h_n, c_n) if lstm else h_n)


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
