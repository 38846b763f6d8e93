"""Greedy and beam search, batched over sentences: all beams of all sentences advance in one tensor batch.

Both call the model's single decoder step (`model.decoder`); the model is a `Seq2Seq` or anything with its
`encode` and `decoder` (an `nmt.ensemble.Ensemble`). Finished sentences are pruned from the batch.
Scores are log-probabilities divided by the GNMT length penalty ((5 + length) / 6) ** alpha, where length counts
the EOS token; with alpha = 0 a score is the plain log-probability of the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID

NEG_INF = float("-inf")


class SearchModel(Protocol):
    """What the search needs of a model: `Seq2Seq` and `Ensemble` both provide it."""

    decoder: Callable[..., tuple[torch.Tensor, Any]]  # (tokens, state, memory) -> (logits, state)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[Any, Any]: ...


@dataclass
class Hypothesis:
    tokens: list[int]  # target ids, EOS excluded
    score: float  # length-normalized log-probability


def length_penalty(length: float, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def _length_penalties(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """`length_penalty` of each length, in Python floats: a tensor power rounds differently in the vectorized
    body than in the tail of the tensor, so a sentence's penalty would depend on its place in the batch."""
    return torch.tensor([length_penalty(float(x), alpha) for x in lengths.tolist()], device=lengths.device)


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, offset: int) -> torch.Tensor:
    """Most output tokens (EOS included) allowed per sentence, from the source length."""
    return torch.ceil(src_lengths.float() * ratio).long() + offset + 1


def _force_eos(log_probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Leave only EOS possible (with its own log-probability) in the given rows."""
    if not bool(rows.any()):  # most steps: spare three passes over the (rows, vocab) tensor
        return log_probs
    eos = log_probs[:, EOS_ID].clone()
    log_probs = log_probs.masked_fill(rows.unsqueeze(1), NEG_INF)
    log_probs[:, EOS_ID] = torch.where(rows, eos, log_probs[:, EOS_ID])
    return log_probs


MIN_ROWS = 4  # matrix products of fewer rows run other kernels (gemv, small-m), whose sums round differently
DROP_FRACTION = 8  # greedy search drops its ended sentences' rows once they are 1/8 of the batch or more
MIN_SOURCE_WIDTH = 32  # attention scores over fewer source positions take another kernel: pad to at least this


BLOCK_SIZES = range(64, 15, -1)  # candidate widths of the blocks `_top_candidates` takes maxima over


def _top_candidates(log_probs: torch.Tensor, alive_scores: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n best continuations of each sentence's k beams: scores alive_scores[j] + log_probs[j, token] and ids
    j * vocab + token, as `(alive_scores.unsqueeze(-1) + log_probs.view(m, k, vocab)).view(m, -1).topk(n)` gives
    them (the same values; among equal scores possibly other ids).

    torch's CPU `topk` over the (m, k * vocab) candidates is a partial sort of every element, as slow as the
    step's output layer at the peer shape; here the vocabulary is cut into blocks, the n blocks with the best
    maxima (plus the beam's score) hold the n best candidates, and only those n * block elements are sorted.
    """
    m, k = alive_scores.shape
    vocab = log_probs.size(-1)
    block = next((b for b in BLOCK_SIZES if vocab % b == 0 and vocab // b >= n), None)
    if block is None:
        candidates = (alive_scores.unsqueeze(-1) + log_probs.view(m, k, vocab)).view(m, k * vocab)
        return candidates.topk(n, dim=-1)
    maxima = log_probs.view(m, k, vocab // block, block).amax(-1)  # (m, k, blocks)
    best_blocks = (alive_scores.unsqueeze(-1) + maxima).view(m, -1).topk(n, dim=-1)[1]  # (m, n)
    ids = (best_blocks.unsqueeze(-1) * block + torch.arange(block, device=log_probs.device)).view(m, n * block)
    scores = log_probs.view(m, k * vocab).gather(1, ids) + alive_scores.gather(1, ids // vocab)
    top_scores, top = scores.topk(n, dim=-1)  # (m, n)
    return top_scores, ids.gather(1, top)


def _encode(model: SearchModel, src: torch.Tensor, src_lengths: torch.Tensor):
    """`model.encode` with every sentence's arithmetic independent of the batch around it.

    Matrix products round each row alike once they have MIN_ROWS rows or more, so three extra copies of the
    longest sentence keep every step of the packed encoder at MIN_ROWS rows or more, and one extra sentence of a
    single token keeps the batch's lengths unequal (packed sequences of one length run another LSTM kernel).
    The extra rows are dropped after.
    """
    n, device = src.size(0), src.device
    src = torch.nn.functional.pad(src, (0, max(0, MIN_SOURCE_WIDTH - src.size(1))), value=PAD_ID)
    short = torch.full((1, src.size(1)), PAD_ID, dtype=src.dtype, device=device)
    short[0, 0] = EOS_ID
    longest = src[src_lengths.argmax()].expand(MIN_ROWS - 1, -1)
    one = torch.ones(1, dtype=src_lengths.dtype, device=device)
    memory, state = model.encode(
        torch.cat([src, longest, short]), torch.cat([src_lengths, src_lengths.max().repeat(MIN_ROWS - 1), one])
    )
    keep = torch.arange(n, device=device)
    return memory.select(keep), state.select(keep)


def _step_log_probs(model: SearchModel, tokens: torch.Tensor, state, memory, beams: int = 1):
    """One decoder step over `beams` rows per sentence (sentence-major; the memory has one row per sentence).
    Fewer than MIN_ROWS rows are padded with copies of the first sentence's rows (see `_encode`)."""
    rows = tokens.size(0)
    if rows < MIN_ROWS:
        sentences = rows // beams
        first = torch.zeros(-(-MIN_ROWS // beams) - sentences, dtype=torch.long)
        sentence_pad = torch.cat([torch.arange(sentences), first]).to(tokens.device)
        pad = (sentence_pad.unsqueeze(1) * beams + torch.arange(beams, device=tokens.device)).view(-1)
        logits, state = model.decoder(tokens[pad], state.select(pad), memory.select(sentence_pad))
        logits, state = logits[:rows], state.select(pad[:rows])
    else:
        logits, state = model.decoder(tokens, state, memory)
    return torch.log_softmax(logits[:, -1], dim=-1, dtype=torch.float32), state  # (rows, vocab)


def greedy_search(
    model: SearchModel, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor, alpha: float = 0.0
) -> list[list[Hypothesis]]:
    n, device = src.size(0), src.device
    memory, state = _encode(model, src, src_lengths)
    rows = torch.arange(n, device=device)  # the sentence of each row still in the batch
    finished = torch.zeros(n, dtype=torch.bool, device=device)  # per row: ended, not yet dropped
    tokens = torch.full((n, 1), BOS_ID, dtype=torch.long, device=device)
    limit = int(max_lengths.max())
    out = torch.full((n, limit), PAD_ID, dtype=torch.long, device=device)
    raw = torch.zeros(n, device=device)
    out_len = torch.zeros(n, dtype=torch.long, device=device)
    for t in range(limit):
        log_probs, state = _step_log_probs(model, tokens, state, memory)
        log_probs = _force_eos(log_probs, max_lengths[rows] <= t + 1)
        best_lp, best = log_probs.max(dim=-1)  # (rows,)
        out[rows, t] = best  # read up to each sentence's end only
        raw[rows] += best_lp.masked_fill(finished, 0)
        done = (best == EOS_ID) & ~finished
        out_len[rows[done]] = t + 1
        finished |= done
        ended = int(finished.sum())
        if ended == finished.numel():
            break
        if ended * DROP_FRACTION >= finished.numel():  # copying the memory every step costs more than the rows
            keep = (~finished).nonzero().squeeze(1)
            rows, best, finished = rows[keep], best[keep], finished[keep]
            state, memory = state.select(keep), memory.select(keep)
        tokens = best.unsqueeze(1)
    scores = raw / _length_penalties(out_len, alpha)
    out_cpu, len_cpu, scores_cpu = out.cpu(), out_len.cpu().tolist(), scores.cpu().tolist()
    return [[Hypothesis(out_cpu[i, : len_cpu[i] - 1].tolist(), scores_cpu[i])] for i in range(n)]


def beam_search(
    model: SearchModel,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_lengths: torch.Tensor,
    beam_size: int,
    n_best: int = 1,
    alpha: float = 0.0,
) -> list[list[Hypothesis]]:
    """Beam search over a batch; returns the `n_best` best finished hypotheses per sentence, best first.

    Each step keeps the best `beam_size` unfinished continuations per sentence from the top 2 * beam_size
    candidates; candidates ending in EOS among the top `beam_size` join the sentence's finished list. A sentence
    is done when it has `beam_size` finished hypotheses, when no unfinished one can still beat the worst of
    them, or at its maximum length (where EOS is forced).
    """
    k, n, device = beam_size, src.size(0), src.device
    n_best = min(n_best, k)
    memory, state = _encode(model, src, src_lengths)  # memory: one row per sentence for its k beams
    state = state.select(torch.arange(n, device=device).repeat_interleave(k))
    limit = int(max_lengths.max())
    best_bound = _length_penalties(max_lengths, alpha)  # largest penalty a sentence can reach
    active = torch.arange(n, device=device)  # original ids of sentences still searching
    alive_scores = torch.full((n, k), NEG_INF, device=device)
    alive_scores[:, 0] = 0.0
    alive_seqs = torch.empty((n, k, 0), dtype=torch.long, device=device)
    fin_scores = torch.full((n, k), NEG_INF, device=device)
    fin_seqs = torch.full((n, k, limit), PAD_ID, dtype=torch.long, device=device)
    fin_len = torch.zeros((n, k), dtype=torch.long, device=device)
    tokens = torch.full((n * k, 1), BOS_ID, dtype=torch.long, device=device)
    slot = torch.arange(2 * k, device=device)
    for t in range(limit):
        m = active.numel()
        log_probs, state = _step_log_probs(model, tokens, state, memory, k)  # (m * k, vocab)
        forced = (max_lengths[active] <= t + 1).repeat_interleave(k)
        log_probs = _force_eos(log_probs, forced)
        vocab = log_probs.size(-1)
        top_scores, top_ids = _top_candidates(log_probs, alive_scores, 2 * k)  # (m, 2k)
        origin, token = top_ids // vocab, top_ids % vocab
        history = alive_seqs.gather(1, origin.unsqueeze(-1).expand(-1, -1, t))  # (m, 2k, t)
        is_eos = token == EOS_ID

        # Finished: EOS candidates within the top k join the finished list (kept sorted, best k).
        new_fin = is_eos & (slot < k) & (top_scores > NEG_INF)
        normalized = top_scores / length_penalty(float(t + 1), alpha)
        pool_scores = torch.cat([fin_scores[active], normalized.masked_fill(~new_fin, NEG_INF)], dim=1)
        cand_seqs = torch.cat([history, token.unsqueeze(-1)], dim=-1)
        cand_seqs = torch.nn.functional.pad(cand_seqs, (0, limit - t - 1), value=PAD_ID)
        pool_seqs = torch.cat([fin_seqs[active], cand_seqs], dim=1)  # (m, 3k, limit)
        pool_len = torch.cat([fin_len[active], torch.full_like(token, t + 1)], dim=1)
        fin_top, fin_pos = pool_scores.topk(k, dim=-1)
        fin_scores[active] = fin_top
        fin_seqs[active] = pool_seqs.gather(1, fin_pos.unsqueeze(-1).expand(-1, -1, limit))
        fin_len[active] = pool_len.gather(1, fin_pos)

        # Alive: the best k candidates that did not end.
        alive_scores, alive_pos = top_scores.masked_fill(is_eos, NEG_INF).topk(k, dim=-1)  # (m, k)
        origin = origin.gather(1, alive_pos)
        token = token.gather(1, alive_pos)
        alive_seqs = torch.cat([history.gather(1, alive_pos.unsqueeze(-1).expand(-1, -1, t)), token.unsqueeze(-1)], 2)

        n_finished = (fin_top > NEG_INF).sum(dim=-1)
        can_improve = alive_scores[:, 0] / best_bound[active] > fin_top[:, -1]
        done = (n_finished >= k) | ~can_improve | (max_lengths[active] <= t + 1)
        if done.all():
            break
        reorder = (torch.arange(m, device=device).unsqueeze(1) * k + origin).view(-1)
        tokens = token.view(-1, 1)
        if done.any():
            keep = (~done).nonzero().squeeze(1)
            active, alive_scores, alive_seqs = active[keep], alive_scores[keep], alive_seqs[keep]
            reorder = reorder.view(m, k)[keep].view(-1)
            tokens = tokens.view(m, k)[keep].view(-1, 1)
            memory = memory.select(keep)
        state = state.select(reorder)
    scores, seqs, lens = fin_scores.cpu(), fin_seqs.cpu(), fin_len.cpu()
    results = []
    for i in range(n):
        hyps = []
        for j in range(n_best):
            if math.isfinite(scores[i, j].item()):
                hyps.append(Hypothesis(seqs[i, j, : int(lens[i, j]) - 1].tolist(), float(scores[i, j])))
        results.append(hyps)
    return results
