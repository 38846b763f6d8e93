"""The encoder-decoder: embeddings, encoder, bridge to the decoder's initial state, decoder."""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from nmt.config import ModelConfig
from nmt.decoder import Decoder, DecoderState, Hidden, Memory
from nmt.encoder import Encoder, EncoderOutput
from nmt.shapes import Shapes
from nmt.tokenizer import PAD_ID


class skip_initialization(TorchFunctionMode):  # noqa: N801 - used as a context manager, like torch.no_grad
    """Build modules with their parameters left uninitialized, for weights loaded right after (`load_state_dict`
    checks that every one is): random initialization costs 0.1 s of a translation's start-up, and the meta device
    (torch's own way) imports torch._dynamo (0.7 s) for `normal_`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in (torch.Tensor.uniform_, torch.Tensor.normal_) or getattr(func, "__module__", "") == "torch.nn.init":
            return args[0] if args else next(iter(kwargs.values()))
        return func(*args, **(kwargs or {}))


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

    def __init__(self, *, config: ModelConfig, shapes: Shapes):
        super().__init__()
        self.kind = config.bridge
        self.dec_layers, self.dec_hidden = shapes.decoder_layers, shapes.decoder_hidden
        enc_states = shapes.encoder_layers * shapes.memory  # every layer's final state, both directions
        self.maps = nn.ModuleList(
            nn.Linear(enc_states, shapes.decoder_layers * shapes.decoder_hidden) for _ in range(shapes.bridge_maps)
        )
        self.is_lstm = shapes.cell == "lstm"

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
        self.shapes = shapes = Shapes.of(config, src_vocab, tgt_vocab)  # every derived size, computed once
        tgt_emb = _embedding(tgt_vocab, config.embedding_dim)
        src_emb = tgt_emb if config.tie_src_tgt_embeddings else _embedding(src_vocab, config.embedding_dim)
        self.encoder = Encoder(config=config, shapes=shapes, embedding=src_emb)
        self.bridge = Bridge(config=config, shapes=shapes)
        self.decoder = Decoder(config=config, shapes=shapes, embedding=tgt_emb)
        if config.init == "uniform":
            initialize_uniform(self, config.init_range)

    def context_vector(self, enc: EncoderOutput) -> torch.Tensor:
        """The source summary (batch, hidden * directions): the top encoder layer's final states, both directions
        concatenated (`context: final`), or the top layer's outputs pooled over the source (`max`, `mean`)."""
        if self.config.context == "max":
            return enc.outputs.masked_fill(~enc.mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        if self.config.context == "mean":
            mask = enc.mask.unsqueeze(-1).to(enc.outputs.dtype)  # (batch, src_len, 1)
            return (enc.outputs * mask).sum(dim=1) / mask.sum(dim=1)
        h = enc.final[0] if isinstance(enc.final, tuple) else enc.final
        top = h.view(self.shapes.encoder_layers, self.shapes.directions, h.size(1), h.size(2))[-1]
        return top.transpose(0, 1).reshape(h.size(1), -1)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Memory, DecoderState]:
        enc = self.encoder(src, src_lengths)
        attention = self.decoder.attention
        outputs = keys = None
        if attention is not None:
            outputs, keys = enc.outputs, attention.keys(enc.outputs)  # (batch, src_len, memory), (.., key)
            if not torch.is_grad_enabled() and torch.is_autocast_enabled(src.device.type):
                # Search under autocast: cast once what only matrix products read, which autocast would cast to
                # the same values at every step. (Training keeps the per-step casts: their gradients add in fp32.)
                low = torch.get_autocast_dtype(src.device.type)
                outputs = outputs.to(low)
                if attention.keys_only_in_matmuls:
                    keys = outputs if keys is enc.outputs else keys.to(low)  # Luong `dot`: the keys are the outputs
        memory = Memory(
            context=self.context_vector(enc) if self.decoder.feed_context else None,
            outputs=outputs,
            keys=keys,
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
