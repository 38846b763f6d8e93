"""Matmul FLOPs of the model from its shapes, and the machine's measured fp32 matmul peak.

Counted: the RNN gate matmuls (input and recurrent), the bridge, attention (key projection, query projection,
scores and context), the readout and the output layer; 2 FLOPs per multiply-add. Only real (non-padding) tokens
count, so padding shows up as lost throughput, never as achieved FLOPs. A training step is 3x the forward pass
(the backward pass computes gradients for both inputs and weights).
"""

from __future__ import annotations

import time

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


def forward_flops(shapes: Shapes, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    """Forward-pass matmul FLOPs for a batch of the model with `shapes` (a built model's `.shapes`); lengths are
    per sentence (EOS included), padding excluded."""
    s = shapes
    src_tokens, tgt_tokens = sum(src_lengths), sum(tgt_lengths)
    flops = src_tokens * _rnn(s.cell, s.embedding, s.encoder_hidden, s.encoder_layers, s.directions)
    flops += (
        len(src_lengths) * s.bridge_maps * 2 * (s.encoder_layers * s.memory) * (s.decoder_layers * s.decoder_hidden)
    )
    flops += tgt_tokens * _rnn(s.cell, s.decoder_input, s.decoder_hidden, s.decoder_layers, 1)
    attended = sum(a * b for a, b in zip(src_lengths, tgt_lengths, strict=True))  # (source, target) position pairs
    if s.attention == "bahdanau":
        flops += src_tokens * 2 * s.memory * s.decoder_hidden + tgt_tokens * 2 * s.decoder_hidden**2
        flops += attended * (2 * s.decoder_hidden + 2 * s.memory)
    elif s.attention == "luong":
        if s.luong_general:
            flops += src_tokens * 2 * s.memory * s.decoder_hidden
        flops += attended * (2 * s.decoder_hidden + 2 * s.memory)
    flops += tgt_tokens * (2 * s.readout_input * s.readout + 2 * s.readout * s.tgt_vocab)
    return flops


def training_flops(shapes: Shapes, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    return 3 * forward_flops(shapes, src_lengths, tgt_lengths)


def measure_matmul_peak(seconds: float = 2.0, sizes: tuple[int, ...] = (1024, 2048)) -> float:
    """Best fp32 GFLOP/s of square torch.mm over `sizes`, on the current thread setting."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            torch.mm(a, b)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / len(sizes):
            torch.mm(a, b)
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best
