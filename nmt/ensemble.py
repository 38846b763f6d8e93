"""Ensembles: several models sharing a vocabulary, seen by the search as one model.

`Ensemble` exposes what `nmt.search` calls on a `Seq2Seq`: `encode(src, lengths) -> (memory, state)`, and
`decoder(tokens, state, memory) -> (scores, state)` whose scores are the mean of the members' log-probabilities
(so the search's log-softmax turns them into the normalized geometric mean of the members' distributions); the
memory and state are per-member lists with the same `select` the search uses to reorder and prune beams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nmt.decoder import DecoderState, Memory
from nmt.errors import NMTError
from nmt.model import Seq2Seq


@dataclass
class EnsembleMemory:
    members: list[Memory]

    def select(self, index: torch.Tensor) -> EnsembleMemory:
        return EnsembleMemory([m.select(index) for m in self.members])


@dataclass
class EnsembleState:
    members: list[DecoderState]

    def select(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState([s.select(index) for s in self.members])


class EnsembleDecoder(nn.Module):
    """The decoder step of every member; returns their mean log-probabilities (batch, steps, vocab)."""

    def __init__(self, models: list[Seq2Seq]):
        super().__init__()
        self.models = models  # a plain list: the Ensemble owns (registers) the members

    def forward(
        self, tokens: torch.Tensor, state: EnsembleState, memory: EnsembleMemory
    ) -> tuple[torch.Tensor, EnsembleState]:
        total, states = None, []
        for model, member_state, member_memory in zip(self.models, state.members, memory.members, strict=True):
            logits, new_state = model.decoder(tokens, member_state, member_memory)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            total = log_probs if total is None else total + log_probs
            states.append(new_state)
        return total / len(self.models), EnsembleState(states)


class Ensemble(nn.Module):
    """Several `Seq2Seq` models over the same vocabularies, decoded as one."""

    def __init__(self, models: list[Seq2Seq]):
        super().__init__()
        if not models:
            raise NMTError("an ensemble needs at least one model")
        self.models = nn.ModuleList(models)
        self.decoder = EnsembleDecoder(list(models))

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[EnsembleMemory, EnsembleState]:
        encoded = [model.encode(src, src_lengths) for model in self.models]
        return EnsembleMemory([m for m, _ in encoded]), EnsembleState([s for _, s in encoded])
