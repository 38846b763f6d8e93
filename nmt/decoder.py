"""The one-to-many decoder. `Decoder.forward` is the single decoder step used by training, search and the server.

It takes T >= 1 input tokens: search calls it with T = 1; teacher-forced training calls it once with the whole
target, which runs the fused RNN over all steps when nothing forces a per-step loop (no attention, or Luong
attention without input feeding) and otherwise loops over the same step internally.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nmt.attention import BahdanauAttention, LuongAttention
from nmt.config import ModelConfig
from nmt.dropout import Dropout, dropout
from nmt.encoder import RNN_CELLS
from nmt.rnn_loop import Hidden, TrainingRNN, trains_step_by_step
from nmt.shapes import Shapes
from nmt.shared_grad import Shared, linear


def select_hidden(hidden: Hidden, index: torch.Tensor) -> Hidden:
    if isinstance(hidden, tuple):
        return tuple(h.index_select(1, index) for h in hidden)
    return hidden.index_select(1, index)


def _select(t: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t.index_select(0, index)


@dataclass
class Memory:
    """What the decoder reads from the encoder; fixed while decoding one sentence. One row per sentence: the
    decoder's rows may hold several beams of each (sentence-major), which share their sentence's row."""

    context: torch.Tensor | None  # (batch, context) the summary vector, fed at every step when enabled
    outputs: torch.Tensor | Shared | None  # (batch, src_len, memory) encoder states, for attention
    keys: torch.Tensor | Shared | None  # (batch, src_len, key) attention projection of `outputs`, computed once
    mask: torch.Tensor | None  # (batch, src_len) True on real tokens

    def select(self, index: torch.Tensor) -> Memory:
        return Memory(*(_select(t, index) for t in (self.context, self.outputs, self.keys, self.mask)))


@dataclass
class DecoderState:
    hidden: Hidden
    feed: torch.Tensor | None  # (batch, readout) previous attentional vector, for Luong input feeding

    def select(self, index: torch.Tensor) -> DecoderState:
        return DecoderState(select_hidden(self.hidden, index), _select(self.feed, index))


def top_layer(hidden: Hidden) -> torch.Tensor:
    h = hidden[0] if isinstance(hidden, tuple) else hidden
    return h[-1]  # (batch, hidden)


_STEP_CELLS = {nn.LSTM: torch.lstm_cell, nn.GRU: torch.gru_cell, nn.RNN: torch.rnn_tanh_cell}


def rnn_step(rnn: nn.RNNBase, x: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
    """One time step of a unidirectional, batch_first `rnn` through torch's cell functions, layer by layer:
    x (batch, 1, in) -> output (batch, 1, hidden), state. bf16 search takes it: under CPU bf16 autocast an LSTM
    step is faster this way than through oneDNN's RNN (greedy 8-10%), the cell state staying fp32. (Training
    steps through `nmt.rnn_loop.TrainingRNN`.)"""
    cell, lstm = _STEP_CELLS[type(rnn)], isinstance(rnn, nn.LSTM)
    out, hs, cs = x[:, 0], [], []
    for layer in range(rnn.num_layers):
        if layer:
            out = dropout(out, rnn.dropout, rnn.training)
        weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if lstm:
            out, c = cell(out, (hidden[0][layer], hidden[1][layer]), *weights)
            cs.append(c)
        else:
            out = cell(out, hidden[layer], *weights)
        hs.append(out)
    h_n = torch.stack(hs)
    return out.unsqueeze(1), ((h_n, torch.stack(cs)) if lstm else h_n)


def _wide(t: torch.Tensor) -> Shared:
    return Shared(t, dtype=torch.promote_types(t.dtype, torch.float32))  # fp32 (or double) under autocast too


@dataclass
class TrainingSteps:
    """What every step of a teacher-forced loop reads, built once for the loop (training on CPU): the RNN run by
    `TrainingRNN` and the readout as a `Shared` weight, whose gradients are then one product over all steps."""

    rnn: TrainingRNN | None  # None: the RNN module itself
    readout: Shared


class Decoder(nn.Module):
    def __init__(self, *, config: ModelConfig, shapes: Shapes, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.embedding_dropout = Dropout(config.embedding_dropout)
        self.attention_type = shapes.attention
        self.feed_context = shapes.feed_context
        self.input_feeding = shapes.input_feeding
        self.readout_dim = shapes.readout
        if shapes.attention == "bahdanau":
            self.attention = BahdanauAttention(shapes.decoder_hidden, shapes.memory, shapes.decoder_hidden)
        elif shapes.attention == "luong":
            self.attention = LuongAttention(shapes.decoder_hidden, shapes.memory, config.luong_score)
        else:
            self.attention = None
        self.rnn = RNN_CELLS[config.cell](
            shapes.decoder_input,
            shapes.decoder_hidden,
            num_layers=shapes.decoder_layers,
            batch_first=True,
            dropout=config.dropout if shapes.decoder_layers > 1 else 0.0,
        )
        self.readout = nn.Linear(shapes.readout_input, shapes.readout)
        self.dropout = Dropout(config.dropout)
        self.output = nn.Linear(shapes.readout, shapes.tgt_vocab)
        if config.tie_embeddings:
            self.output.weight = embedding.weight
        self.stepwise = shapes.stepwise
        # fp32 training on CPU runs the RNN through `TrainingRNN` (True) or oneDNN's one-step RNN (False): which is
        # faster depends on the CPU, so training measures it (`nmt.rnn_loop.step_loop_speedup`) and sets this;
        # bf16 training always runs the loop.
        self.fp32_step_loop = False

    def initial_feed(self, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        return like.new_zeros(batch, self.readout_dim) if self.input_feeding else None

    def forward(self, tokens: torch.Tensor, state: DecoderState, memory: Memory) -> tuple[torch.Tensor, DecoderState]:
        """tokens (batch, steps) -> logits (batch, steps, vocab) and the state after the last step."""
        emb = self.embedding_dropout(self.embedding(tokens))  # (batch, steps, emb)
        if self.stepwise and tokens.size(1) > 1:
            train = None
            if trains_step_by_step(self.rnn, tokens.device):
                loop = self.fp32_step_loop or torch.is_autocast_enabled(tokens.device.type)
                rnn = TrainingRNN(self.rnn) if loop else None
                train = TrainingSteps(rnn, Shared(self.readout.weight, self.readout.bias))
                if memory.outputs is not None:  # attention's one-query products: fp32, 1.2-3x faster than bf16
                    luong = self.attention_type == "luong"  # Bahdanau adds its keys to the query: no product
                    keys = _wide(memory.keys) if luong else memory.keys
                    memory = Memory(memory.context, _wide(memory.outputs), keys, memory.mask)
            outputs = []
            for step_emb in emb.split(1, dim=1):
                out, state = self._steps(step_emb, state, memory, train)
                outputs.append(out)
            readout = torch.cat(outputs, dim=1)
        else:
            readout, state = self._steps(emb, state, memory)
        return self.output(self.dropout(readout)), state  # (batch, steps, vocab)

    def _steps(
        self, emb: torch.Tensor, state: DecoderState, memory: Memory, train: TrainingSteps | None = None
    ) -> tuple[torch.Tensor, DecoderState]:
        steps = emb.size(1)
        inputs, context = [emb], None
        if self.attention_type == "bahdanau":
            query = top_layer(state.hidden).unsqueeze(1)  # (batch, 1, hidden)
            context = self.attention(query, memory.keys, memory.outputs, memory.mask)
            inputs.append(context)
        elif self.feed_context:
            context = memory.context  # (batch, context), one row per sentence for all its beams
            if (beams := emb.size(0) // context.size(0)) > 1:
                context = context.repeat_interleave(beams, dim=0)
            context = context.unsqueeze(1).expand(-1, steps, -1)  # (rows, steps, context)
            inputs.append(context)
        if self.input_feeding:
            inputs.append(state.feed.unsqueeze(1))
        rnn_in = torch.cat(inputs, dim=-1)
        if train is not None and train.rnn is not None:
            rnn_out, hidden = train.rnn(rnn_in, state.hidden)
        elif steps == 1 and type(self.rnn) in _STEP_CELLS and torch.is_autocast_enabled(emb.device.type):
            rnn_out, hidden = rnn_step(self.rnn, rnn_in, state.hidden)
        else:
            rnn_out, hidden = self.rnn(rnn_in, state.hidden)  # (batch, steps, hidden)
        if self.attention_type == "luong":
            context = self.attention(rnn_out, memory.keys, memory.outputs, memory.mask)
        parts = [rnn_out] + ([context] if context is not None else [])
        if self.attention_type != "luong":
            parts.append(emb)
        parts = torch.cat(parts, dim=-1)
        readout = torch.tanh(self.readout(parts) if train is None else linear(parts, train.readout))
        feed = readout[:, -1] if self.input_feeding else None
        return readout, DecoderState(hidden, feed)
