"""Attention over encoder states: Bahdanau (additive) and Luong (general or dot).

A query has `beams` rows per memory row (rows sentence-major): beam search keeps one copy of each sentence's
memory for all its beams, whose queries read it in one matrix product; training and greedy search have one.
"""

from __future__ import annotations

import torch
from torch import nn

from nmt.shared_grad import Shared, linear, matmul


def _attend(scores: torch.Tensor, mask: torch.Tensor, values: torch.Tensor | Shared) -> torch.Tensor:
    # scores (batch, queries, src_len), mask (batch, src_len), values (batch, src_len, mem)
    # The softmax runs in fp32 under bf16 autocast too: in bf16 its backward put a 3.3% error on the gradient of
    # the attention's key projection (0.3% in fp32; docs/performance.md). A no-op in fp32.
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32)).masked_fill(~mask.unsqueeze(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return matmul(weights, values)  # (batch, queries, mem)


class BahdanauAttention(nn.Module):
    """score(q, m) = v^T tanh(W_q q + W_m m); the memory projection is computed once per source."""

    keys_only_in_matmuls = False  # the keys are added to the query, not multiplied

    def __init__(self, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        self.key_proj = nn.Linear(memory_size, attention_size, bias=False)
        self.query_proj = nn.Linear(query_size, attention_size, bias=True)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory)  # (batch, src_len, att)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor | Shared, mask: torch.Tensor):
        rows, steps = query.shape[:2]
        q = self.query_proj(query).reshape(keys.size(0), -1, 1, keys.size(2))  # (batch, beams * steps, 1, att)
        scores = self.v(torch.tanh(q + keys.unsqueeze(1))).squeeze(-1)  # (batch, beams * steps, src_len)
        return _attend(scores, mask, memory).view(rows, steps, -1)


class LuongAttention(nn.Module):
    """score(q, m) = q^T W m (general) or q^T m (dot); W m is computed once per source."""

    keys_only_in_matmuls = True

    def __init__(self, query_size: int, memory_size: int, score: str):
        super().__init__()
        self.key_proj = nn.Linear(memory_size, query_size, bias=False) if score == "general" else None

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_proj(memory) if self.key_proj is not None else memory  # (batch, src_len, query)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor | Shared, memory: torch.Tensor | Shared, mask: torch.Tensor
    ):
        rows, steps = query.shape[:2]
        q = query.reshape(mask.size(0), -1, query.size(2))  # (batch, beams * steps, query)
        scores = linear(q, keys)  # (batch, beams * steps, src_len)
        return _attend(scores, mask, memory).view(rows, steps, -1)
