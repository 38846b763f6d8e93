"""The many-to-one encoder: an RNN over the source that yields its states and a summary context vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNN_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class EncoderOutput:
    outputs: torch.Tensor  # (batch, src_len, hidden * directions)
    final: torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # (layers * directions, batch, hidden), (h, c) for LSTM
    mask: torch.Tensor  # (batch, src_len) True on real tokens


def reverse_padded(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `length` tokens, leaving padding in place."""
    positions = torch.arange(ids.size(1), device=ids.device).unsqueeze(0)  # (1, src_len)
    flipped = lengths.unsqueeze(1) - 1 - positions
    index = torch.where(flipped >= 0, flipped, positions)
    return ids.gather(1, index)


class Encoder(nn.Module):
    def __init__(
        self,
        embedding: nn.Embedding,
        cell: str,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        embedding_dropout: float,
        reverse_source: bool,
    ):
        super().__init__()
        self.embedding = embedding
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.reverse_source = reverse_source
        self.rnn = RNN_CELLS[cell](
            embedding.embedding_dim,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        if self.reverse_source:
            src = reverse_padded(src, lengths)
        emb = self.embedding_dropout(self.embedding(src))  # (batch, src_len, emb)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        return EncoderOutput(outputs, final, mask)
