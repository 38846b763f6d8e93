"""Matmul FLOPs of the model from its shapes, and the machine's measured matmul peak per precision.

Counted: the RNN gate matmuls (input and recurrent), the bridge, attention (key projection, query projection,
scores and context), the readout and the output layer; 2 FLOPs per multiply-add. Only real (non-padding) tokens
count, so padding shows up as lost throughput, never as achieved FLOPs. A training step is 3x the forward pass
(the backward pass computes gradients for both inputs and weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from nmt.shapes import Shapes

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _rnn(cell: str, input_size: int, hidden: int, layers: int, directions: int) -> int:
    """FLOPs per token of a (possibly bidirectional) multi-layer RNN."""
    total, size = 0, input_size
    for _ in range(layers):
        total += directions * 2 * GATES[cell] * hidden * (size + hidden)
        size = hidden * directions
    return total


def encoder_flops(shapes: Shapes, src_lengths: list[int]) -> int:
    """The work done once per source sentence: the encoder, the bridge and the attention keys."""
    s = shapes
    src_tokens = sum(src_lengths)
    flops = src_tokens * _rnn(s.cell, s.embedding, s.encoder_hidden, s.encoder_layers, s.directions)
    flops += (
        len(src_lengths) * s.bridge_maps * 2 * (s.encoder_layers * s.memory) * (s.decoder_layers * s.decoder_hidden)
    )
    if s.attention == "bahdanau" or s.luong_general:
        flops += src_tokens * 2 * s.memory * s.decoder_hidden  # key projection
    return flops


def decoder_flops(shapes: Shapes, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    """The decoder steps: RNN, attention over the source positions, readout and output layer."""
    s = shapes
    tgt_tokens = sum(tgt_lengths)
    flops = tgt_tokens * _rnn(s.cell, s.decoder_input, s.decoder_hidden, s.decoder_layers, 1)
    attended = sum(a * b for a, b in zip(src_lengths, tgt_lengths, strict=True))  # (source, target) position pairs
    if s.attention == "bahdanau":
        flops += tgt_tokens * 2 * s.decoder_hidden**2 + attended * (2 * s.decoder_hidden + 2 * s.memory)
    elif s.attention == "luong":
        flops += attended * (2 * s.decoder_hidden + 2 * s.memory)
    return flops + tgt_tokens * (2 * s.readout_input * s.readout + 2 * s.readout * s.tgt_vocab)


def forward_flops(shapes: Shapes, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    """Forward-pass matmul FLOPs for a batch of the model with `shapes` (a built model's `.shapes`); lengths are
    per sentence (EOS included), padding excluded."""
    return encoder_flops(shapes, src_lengths) + decoder_flops(shapes, src_lengths, tgt_lengths)


def search_flops(shapes: Shapes, src_lengths: list[int], out_lengths: list[int], beam: int) -> int:
    """An estimate of a search's FLOPs: each sentence's `beam` hypotheses decode as many steps as its output has
    tokens (EOS included); the steps beams take past the best hypothesis and the pruning of beams are not counted."""
    return encoder_flops(shapes, src_lengths) + beam * decoder_flops(shapes, src_lengths, out_lengths)


def training_flops(shapes: Shapes, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    return 3 * forward_flops(shapes, src_lengths, tgt_lengths)


PEAK_PRECISIONS = {"fp32": ("fp32",), "bf16": ("bf16",), "int8": ("int8",), "int8+bf16": ("int8", "bf16")}


def _square_matmul(dtype: str, n: int) -> Callable[[], object]:
    if dtype == "int8":  # what row-wise int8 delivers: quantize each input row, int8 GEMM, scale back
        from nmt.int8 import Int8Matrix

        layer, x = Int8Matrix(torch.randn(n, n)), torch.randn(n, n)
        return lambda: layer(x)
    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n, dtype=kind), torch.randn(n, n, dtype=kind)
    return lambda: torch.mm(a, b)


def measure_matmul_peak(dtype: str = "fp32", seconds: float = 2.0, sizes: tuple[int, ...] = (1024, 2048)) -> float:
    """Best GFLOP/s of square (n x n) @ (n x n) products over `sizes` in `dtype` (fp32, bf16, or int8 as a
    row-wise int8 matrix, `nmt.int8`), on the current thread setting."""
    best = 0.0
    for n in sizes:
        fn = _square_matmul(dtype, n)
        for _ in range(2):
            fn()
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            fn()
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def peak_for(precision: str, seconds: float = 2.0) -> tuple[float, dict[str, float]]:
    """The peak that bounds a run in `precision` (the fastest of the formats it uses) and each format's peak."""
    peaks = {p: measure_matmul_peak(p, seconds) for p in PEAK_PRECISIONS[precision]}
    return max(peaks.values()), peaks
