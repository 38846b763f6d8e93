"""Every size and switch derived from a `ModelConfig`, computed once where the model is built.

`Seq2Seq` computes a `Shapes` and hands it to its encoder, bridge and decoder; `nmt.flops` counts FLOPs from the
built model's `shapes`, so a change to the model cannot silently leave the FLOP count behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from nmt.config import ModelConfig


@dataclass(frozen=True)
class Shapes:
    cell: str
    src_vocab: int
    tgt_vocab: int
    embedding: int
    encoder_hidden: int  # per direction
    encoder_layers: int
    directions: int
    memory: int  # encoder output size: encoder_hidden * directions
    decoder_hidden: int
    decoder_layers: int
    attention: str  # none, bahdanau, luong
    luong_general: bool  # luong attention with a key projection (score "general")
    feed_context: bool  # the context vector enters every decoder step (context-vector models only)
    input_feeding: bool  # the previous attentional vector enters the next step (luong only)
    decoder_input: int  # embedding + attention or context vector + fed readout
    readout_input: int  # decoder output + context + (embedding unless luong)
    readout: int
    bridge_maps: int  # linear maps from the encoder's final states (2 for LSTM: h and c), 0 for a zero bridge

    @classmethod
    def of(cls, config: ModelConfig, src_vocab: int, tgt_vocab: int) -> Shapes:
        directions = 2 if config.bidirectional else 1
        encoder_hidden = config.encoder_hidden_size or config.hidden_size
        memory = encoder_hidden * directions
        attention = config.attention
        feed_context = config.feed_context and attention == "none"
        input_feeding = config.input_feeding and attention == "luong"
        readout = config.readout_dim or (config.embedding_dim if config.tie_embeddings else config.hidden_size)
        uses_context = attention == "bahdanau" or feed_context  # a context vector enters the RNN input
        decoder_input = config.embedding_dim + (memory if uses_context else 0) + (readout if input_feeding else 0)
        readout_input = config.hidden_size + (memory if (attention != "none" or feed_context) else 0)
        readout_input += config.embedding_dim if attention != "luong" else 0
        bridge_maps = (2 if config.cell == "lstm" else 1) if config.bridge == "linear" else 0
        return cls(
            cell=config.cell,
            src_vocab=src_vocab,
            tgt_vocab=tgt_vocab,
            embedding=config.embedding_dim,
            encoder_hidden=encoder_hidden,
            encoder_layers=config.encoder_layers,
            directions=directions,
            memory=memory,
            decoder_hidden=config.hidden_size,
            decoder_layers=config.decoder_layers,
            attention=attention,
            luong_general=attention == "luong" and config.luong_score == "general",
            feed_context=feed_context,
            input_feeding=input_feeding,
            decoder_input=decoder_input,
            readout_input=readout_input,
            readout=readout,
            bridge_maps=bridge_maps,
        )

    @property
    def stepwise(self) -> bool:
        """Bahdanau reads the previous hidden state and input feeding the previous output: one step at a time."""
        return self.attention == "bahdanau" or self.input_feeding
