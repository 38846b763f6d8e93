"""An RNN (LSTM, GRU or tanh RNN; layers; directions; padded or packed input) run step by step in Python, for the
two places where torch's own RNN does not fit: row-wise int8 search (`nmt.int8.Int8RNN`) and training on CPU
(`TrainingRNN`).

Each layer and direction projects all its input rows at once (one matrix product), then runs its recurrent
product and cell step by step. In training, torch's packed CPU RNN writes each step's gradient of that projection
into a zero-filled tensor the size of the whole projection and adds it up (5% of a bf16 training step at the peer
shape); here the projection is split into steps, whose gradients autograd joins with one `cat`, and
the weights are `nmt.shared_grad.Shared`: each one's gradient is one product over all steps (the decoder, which
calls the loop once per step, reads its input weights at every step too).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from nmt.dropout import dropout
from nmt.shared_grad import Shared, linear

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # (layers * directions, batch, hidden), (h, c) for LSTM


def rnn_mode(rnn: nn.RNNBase) -> str:
    """lstm, gru or rnn (tanh only)."""
    mode = {nn.LSTM: "lstm", nn.GRU: "gru"}.get(type(rnn), "rnn")
    if mode == "rnn" and rnn.nonlinearity != "tanh":
        raise ValueError("only tanh RNNs run step by step")
    if not rnn.batch_first or getattr(rnn, "proj_size", 0):
        raise ValueError("only batch_first RNNs without projections run step by step")
    return mode


class RNNLoop:
    """The loop over layers, directions and steps; subclasses give a layer's input projection and its cell."""

    mode: str
    layers: int
    directions: int
    hidden: int
    dropout: float = 0.0  # between layers, in training

    def _project(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Input rows (rows, in) of layer-and-direction `index` -> their projection (rows, gates), biases included
        as the cell expects them."""
        raise NotImplementedError

    def _cell(
        self, index: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step: this step's projection x (rows, gates), state h, c (rows, hidden) -> new h, c."""
        raise NotImplementedError

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
        proj = self._project(index, x).split(batch_sizes)  # one (rows, gates) per step
        steps = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
        outs = []
        for t in steps:
            rows = batch_sizes[t]
            if rows < h.size(0):  # the rows that have ended keep their state
                new_h, new_c = self._cell(index, proj[t], h[:rows], None if c is None else c[:rows])
                h = torch.cat([new_h, h[rows:]])
                c = None if c is None else torch.cat([new_c, c[rows:]])
            else:
                new_h, new_c = self._cell(index, proj[t], h, c)
                h, c = new_h, new_c
            outs.append(new_h)
        if reverse:
            outs.reverse()
        return (outs[0] if len(outs) == 1 else torch.cat(outs)), h, c

    def forward(self, input: torch.Tensor | PackedSequence, hx: Hidden | None = None) -> tuple[object, Hidden]:
        """As torch's RNN: (batch, steps, in) or packed input, initial state -> outputs, final state."""
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes = input.data, input.batch_sizes.tolist()
            batch = batch_sizes[0]
        else:  # (batch, steps, in): the same as a packed batch whose rows all have every step
            batch, steps = input.shape[:2]
            data = input[:, 0] if steps == 1 else input.transpose(0, 1).reshape(batch * steps, -1)
            batch_sizes = [batch] * steps
        lstm = self.mode == "lstm"
        shape = (self.layers * self.directions, batch, self.hidden)
        if hx is None:
            h0 = data.new_zeros(shape, dtype=torch.promote_types(data.dtype, torch.float32))
            c0 = h0 if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
            if packed and input.sorted_indices is not None:
                h0 = h0.index_select(1, input.sorted_indices)
                c0 = None if c0 is None else c0.index_select(1, input.sorted_indices)
        state = torch.promote_types(h0.dtype, torch.float32)  # the state stays fp32 (or double) under autocast
        h0, c0 = h0.to(state).unbind(0), None if c0 is None else c0.to(state).unbind(0)
        finals_h, finals_c = [], []
        for layer in range(self.layers):
            if layer:
                data = dropout(data, self.dropout, self.dropout > 0.0)
            outs = []
            for direction in range(self.directions):
                i = layer * self.directions + direction
                out, h, c = self._run(
                    data, batch_sizes, h0[i], None if c0 is None else c0[i], i, reverse=direction == 1
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


class TrainingRNN(RNNLoop):
    """A torch RNN's own parameters run by the loop, with gradients (training on CPU): built once per forward
    (its recurrent weights cast once to the autocast dtype), the same values as the RNN it reads."""

    def __init__(self, rnn: nn.RNNBase):
        self.mode = rnn_mode(rnn)
        self.layers, self.hidden = rnn.num_layers, rnn.hidden_size
        self.directions = 2 if rnn.bidirectional else 1
        self.dropout = rnn.dropout if rnn.training else 0.0
        self.inputs, self.recurrent = [], []
        for layer in range(self.layers):
            for direction in range(self.directions):
                sfx = f"_l{layer}" + ("_reverse" if direction else "")
                self.inputs.append(Shared(getattr(rnn, "weight_ih" + sfx), getattr(rnn, "bias_ih" + sfx, None)))
                self.recurrent.append(Shared(getattr(rnn, "weight_hh" + sfx), getattr(rnn, "bias_hh" + sfx, None)))

    __call__ = RNNLoop.forward

    def _project(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.inputs[index])

    def _cell(
        self, index: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        rec = linear(h, self.recurrent[index])  # (rows, gates)
        if self.mode == "lstm":
            i, f, g, o = (x + rec).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        if self.mode == "gru":
            (xr, xz, xn), (hr, hz, hn) = x.chunk(3, 1), rec.chunk(3, 1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            return n + z * (h - n), None  # (1 - z) n + z h, fp32 like h
        return torch.tanh(x + rec).to(h.dtype), None


def trains_step_by_step(rnn: nn.Module, device: torch.device) -> bool:
    """Whether this forward trains `rnn` (torch's RNN, gradients on, CPU) through `TrainingRNN`."""
    return torch.is_grad_enabled() and device.type == "cpu" and isinstance(rnn, nn.RNNBase)


def step_loop_speedup(rnn: nn.RNNBase, rows: int = 128, steps: int = 8, rounds: int = 2) -> float:
    """How much faster fp32 training runs a one-step-at-a-time decoder RNN through `TrainingRNN` than through the
    RNN itself (oneDNN's one-step RNN on CPU): the RNN's time over the loop's, forward and backward over `steps`
    steps of `rows` rows, each way timed `rounds` times in turn, the best of each.

    Which is faster depends on the CPU: whole training steps ran 1.13-1.22x slower with the loop on an AMD EPYC,
    1.08-1.12x faster on an Intel Xeon (docs/performance.md). Runs on a copy: the RNN's gradients are untouched.
    """
    import copy
    import time

    rnn = copy.deepcopy(rnn).train()
    x = torch.randn(rows, steps, rnn.input_size)
    shape = (rnn.num_layers * (2 if rnn.bidirectional else 1), rows, rnn.hidden_size)
    h0 = torch.zeros(shape)
    hx: Hidden = (h0, h0) if isinstance(rnn, nn.LSTM) else h0

    def train(loop: bool) -> float:
        start = time.perf_counter()
        run = TrainingRNN(rnn) if loop else rnn
        state, outs = hx, []
        for step in x.split(1, dim=1):
            out, state = run(step, state)
            outs.append(out)
        torch.cat(outs, 1).sum().backward()
        return time.perf_counter() - start

    for loop in (False, True):
        train(loop)  # warm-up: kernels and allocations
    best = {False: float("inf"), True: float("inf")}
    for _ in range(rounds):
        for loop in best:
            best[loop] = min(best[loop], train(loop))
    return best[False] / best[True]
