"""The encoder-decoder: embeddings, encoder, bridge to the decoder's initial state, decoder."""

from __future__ import annotations

import torch
from torch import nn

from nmt.config import ModelConfig
from nmt.decoder import Decoder, DecoderState, Hidden, Memory
from nmt.encoder import Encoder
from nmt.tokenizer import PAD_ID


def initialize_uniform(model: nn.Module, init_range: float) -> None:
    """OpenNMT-py's `param_init`: every parameter from U(-init_range, init_range); padding embeddings stay zero."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-init_range, init_range)
        for module in model.modules():
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()


def _embedding(vocab_size: int, dim: int) -> nn.Embedding:
    emb = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
    nn.init.normal_(emb.weight, std=dim**-0.5)
    with torch.no_grad():
        emb.weight[PAD_ID].zero_()
    return emb


class Bridge(nn.Module):
    """Maps the encoder's final states (all layers and directions) to the decoder's initial states.

    A linear map of the concatenated final states handles any mismatch of directions, layers or sizes; `copy`
    (OpenNMT-py's `bridge: false`) passes each layer's final state on, both directions concatenated.
    """

    def __init__(self, kind: str, cell: str, enc_states: int, enc_hidden: int, dec_layers: int, dec_hidden: int):
        super().__init__()
        self.kind, self.dec_layers, self.dec_hidden = kind, dec_layers, dec_hidden
        n_maps = (2 if cell == "lstm" else 1) if kind == "linear" else 0
        self.maps = nn.ModuleList(nn.Linear(enc_states * enc_hidden, dec_layers * dec_hidden) for _ in range(n_maps))
        self.is_lstm = cell == "lstm"

    def _map(self, linear: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        batch = h.size(1)
        flat = h.transpose(0, 1).reshape(batch, -1)  # (batch, enc_layers * directions * hidden)
        out = torch.tanh(linear(flat)).view(batch, self.dec_layers, self.dec_hidden)
        return out.transpose(0, 1).contiguous()  # (dec_layers, batch, dec_hidden)

    def _copy(self, h: torch.Tensor) -> torch.Tensor:
        batch = h.size(1)
        per_layer = h.view(self.dec_layers, -1, batch, h.size(2))  # (layers, directions, batch, hidden)
        return per_layer.permute(0, 2, 1, 3).reshape(self.dec_layers, batch, self.dec_hidden)

    def forward(self, final: Hidden) -> Hidden:
        h = final[0] if isinstance(final, tuple) else final
        if self.kind == "copy":
            return tuple(self._copy(x) for x in final) if self.is_lstm else self._copy(final)
        if self.kind == "zero":
            zeros = h.new_zeros(self.dec_layers, h.size(1), self.dec_hidden)
            return (zeros, zeros.clone()) if self.is_lstm else zeros
        if self.is_lstm:
            return self._map(self.maps[0], final[0]), self._map(self.maps[1], final[1])
        return self._map(self.maps[0], h)


class Seq2Seq(nn.Module):
    def __init__(self, config: ModelConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        self.config = config
        directions = 2 if config.bidirectional else 1
        readout = config.readout_dim or (config.embedding_dim if config.tie_embeddings else config.hidden_size)
        tgt_emb = _embedding(tgt_vocab, config.embedding_dim)
        src_emb = tgt_emb if config.tie_src_tgt_embeddings else _embedding(src_vocab, config.embedding_dim)
        enc_hidden = config.encoder_hidden_size or config.hidden_size
        self.encoder = Encoder(
            src_emb,
            config.cell,
            enc_hidden,
            config.encoder_layers,
            config.bidirectional,
            config.dropout,
            config.embedding_dropout,
            config.reverse_source,
        )
        self.bridge = Bridge(
            config.bridge,
            config.cell,
            config.encoder_layers * directions,
            enc_hidden,
            config.decoder_layers,
            config.hidden_size,
        )
        self.decoder = Decoder(
            tgt_emb,
            config.cell,
            config.hidden_size,
            config.decoder_layers,
            config.dropout,
            config.embedding_dropout,
            config.attention,
            config.luong_score,
            config.input_feeding,
            config.feed_context,
            self.encoder.output_size,
            readout,
            config.tie_embeddings,
        )
        self.directions = directions
        if config.init == "uniform":
            initialize_uniform(self, config.init_range)

    def context_vector(self, final: Hidden) -> torch.Tensor:
        """The source summary: the top encoder layer's final state, both directions concatenated."""
        h = final[0] if isinstance(final, tuple) else final
        top = h.view(self.config.encoder_layers, self.directions, h.size(1), h.size(2))[-1]
        return top.transpose(0, 1).reshape(h.size(1), -1)  # (batch, hidden * directions)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        enc = self.encoder(src, src_lengths)
        attention = self.decoder.attention
        memory = Memory(
            context=self.context_vector(enc.final) if self.decoder.feed_context else None,
            outputs=enc.outputs if attention is not None else None,
            keys=attention.keys(enc.outputs) if attention is not None else None,
            mask=enc.mask if attention is not None else None,
        )
        state = DecoderState(self.bridge(enc.final), self.decoder.initial_feed(src.size(0), enc.outputs))
        return memory, state

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, teacher_forcing: float = 1.0
    ) -> torch.Tensor:
        """Logits (batch, tgt_len, vocab) for every target position."""
        memory, state = self.encode(src, src_lengths)
        if teacher_forcing >= 1.0:
            return self.decoder(tgt_in, state, memory)[0]
        tokens, steps = tgt_in[:, :1], []
        for t in range(tgt_in.size(1)):
            logits, state = self.decoder(tokens, state, memory)  # (batch, 1, vocab)
            steps.append(logits)
            if t + 1 < tgt_in.size(1):
                gold = torch.rand(tgt_in.size(0), 1, device=tgt_in.device) < teacher_forcing
                tokens = torch.where(gold, tgt_in[:, t + 1 : t + 2], logits.argmax(-1))
        return torch.cat(steps, dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) parameters count once
