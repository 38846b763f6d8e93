"""Training loss: per-step cross-entropy summed over time steps, padding masked, optional label smoothing."""

from __future__ import annotations

import torch

from nmt.tokenizer import PAD_ID


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (label-smoothed) cross-entropy and summed NLL over all non-padding target positions.

    logits (batch, steps, vocab), targets (batch, steps). Both sums run over time steps and sentences; the
    trainer divides the first by the normalizer it is configured with (sentences by default, so the optimized
    quantity is the per-sentence loss summed over time steps, averaged over the batch).
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (batch, steps, vocab)
    mask = targets != PAD_ID
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (batch, steps)
    nll_sum = nll.masked_select(mask).sum()
    if label_smoothing == 0.0:
        return nll_sum, nll_sum.detach()
    uniform = -log_probs.mean(dim=-1)  # (batch, steps) cross-entropy against the uniform distribution
    loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    return loss.masked_select(mask).sum(), nll_sum.detach()
