"""The encoder: an RNN over the source that yields its states (for attention) and the final states of every layer
and direction (for the bridge to the decoder); `Seq2Seq.context_vector` builds the summary vector from one or the
other (`model.context`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.config import ModelConfig
from nmt.dropout import Dropout
from nmt.rnn_loop import TrainingRNN, trains_step_by_step
from nmt.shapes import Shapes

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
    def __init__(self, *, config: ModelConfig, shapes: Shapes, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.embedding_dropout = Dropout(config.embedding_dropout)
        self.reverse_source = config.reverse_source
        self.rnn = RNN_CELLS[config.cell](
            shapes.embedding,
            shapes.encoder_hidden,
            num_layers=shapes.encoder_layers,
            batch_first=True,
            bidirectional=shapes.directions == 2,
            dropout=config.dropout if shapes.encoder_layers > 1 else 0.0,
        )

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        if self.reverse_source:
            src = reverse_padded(src, lengths)
        emb = self.embedding_dropout(self.embedding(src))  # (batch, src_len, emb)
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        # Training on CPU runs the RNN through `TrainingRNN`: torch's packed CPU RNN adds up its gradients one
        # full-size tensor per step (nmt.rnn_loop).
        rnn = TrainingRNN(self.rnn) if trains_step_by_step(self.rnn, src.device) else self.rnn
        outputs, final = rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        return EncoderOutput(outputs, final, mask)
