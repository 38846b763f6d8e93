"""Matmul FLOPs of the model from its shapes, and the machine's measured fp32 matmul peak.

Counted: the RNN gate matmuls (input and recurrent), the bridge, attention (key projection, query projection,
scores and context), the readout and the output layer; 2 FLOPs per multiply-add. Only real (non-padding) tokens
count, so padding shows up as lost throughput, never as achieved FLOPs. A training step is 3x the forward pass
(the backward pass computes gradients for both inputs and weights).
"""

from __future__ import annotations

import time

import torch

from nmt.config import ModelConfig

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _rnn(cell: str, input_size: int, hidden: int, layers: int, directions: int) -> int:
    """FLOPs per token of a (possibly bidirectional) multi-layer RNN."""
    total, size = 0, input_size
    for _ in range(layers):
        total += directions * 2 * GATES[cell] * hidden * (size + hidden)
        size = hidden * directions
    return total


def forward_flops(config: ModelConfig, vocab: int, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    """Forward-pass matmul FLOPs for a batch; lengths are per sentence (EOS included), padding excluded."""
    emb, hid = config.embedding_dim, config.hidden_size
    enc_hid = config.encoder_hidden_size or hid
    dirs = 2 if config.bidirectional else 1
    memory = enc_hid * dirs
    readout = config.readout_dim or (emb if config.tie_embeddings else hid)
    src_tokens, tgt_tokens = sum(src_lengths), sum(tgt_lengths)
    flops = src_tokens * _rnn(config.cell, emb, enc_hid, config.encoder_layers, dirs)
    if config.bridge == "linear":
        maps = 2 if config.cell == "lstm" else 1
        flops += len(src_lengths) * maps * 2 * (config.encoder_layers * memory) * (config.decoder_layers * hid)
    feed_context = config.feed_context and config.attention == "none"
    dec_in = emb
    if config.attention == "bahdanau" or feed_context:
        dec_in += memory
    if config.attention == "luong" and config.input_feeding:
        dec_in += readout
    flops += tgt_tokens * _rnn(config.cell, dec_in, hid, config.decoder_layers, 1)
    attended = sum(s * t for s, t in zip(src_lengths, tgt_lengths, strict=True))  # (source, target) position pairs
    if config.attention == "bahdanau":
        flops += src_tokens * 2 * memory * hid + tgt_tokens * 2 * hid * hid
        flops += attended * (2 * hid + 2 * memory)
    elif config.attention == "luong":
        if config.luong_score == "general":
            flops += src_tokens * 2 * memory * hid
        flops += attended * (2 * hid + 2 * memory)
    readout_in = hid + (memory if (config.attention != "none" or feed_context) else 0)
    readout_in += emb if config.attention != "luong" else 0
    flops += tgt_tokens * (2 * readout_in * readout + 2 * readout * vocab)
    return flops


def training_flops(config: ModelConfig, vocab: int, src_lengths: list[int], tgt_lengths: list[int]) -> int:
    return 3 * forward_flops(config, vocab, src_lengths, tgt_lengths)


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
