import math

import pytest
import torch
from torch import nn

from nmt import search as search_module
from nmt.config import ModelConfig
from nmt.decoder import DecoderState, Memory
from nmt.model import Seq2Seq
from nmt.precision import autocast, prepare_for_search
from nmt.search import NEG_INF, beam_search, greedy_search, length_penalty, max_output_lengths
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID

A, B = 4, 5


class BigramDecoder(nn.Module):
    """Next-token log-probabilities depend only on the previous token (a fixed table)."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int):
        super().__init__()
        logp = torch.full((vocab, vocab), -1e9)
        for prev, nexts in table.items():
            for tok, p in nexts.items():
                logp[prev, tok] = math.log(p)
        self.logp = logp

    def forward(self, tokens, state, memory):
        return self.logp[tokens[:, -1]].unsqueeze(1), state


class BigramModel(nn.Module):
    def __init__(self, table, vocab=6):
        super().__init__()
        self.decoder = BigramDecoder(table, vocab)

    def encode(self, src, lengths):
        n = src.size(0)
        return Memory(None, None, None, None), DecoderState(torch.zeros(1, n, 1), None)


# Greedy takes A (0.6) then EOS (0.4): 0.24. Beam search finds B (0.4) then EOS (0.9): 0.36.
TRAP = {BOS_ID: {A: 0.6, B: 0.4}, A: {EOS_ID: 0.4, A: 0.3, B: 0.3}, B: {EOS_ID: 0.9, A: 0.1}}


def one_sentence():
    return torch.tensor([[A, EOS_ID]]), torch.tensor([2]), torch.tensor([10])


def test_beam_search_beats_greedy_where_greedy_is_wrong():
    model = BigramModel(TRAP)
    src, lengths, limit = one_sentence()
    greedy = greedy_search(model, src, lengths, limit)[0][0]
    beam = beam_search(model, src, lengths, limit, beam_size=2)[0][0]
    assert greedy.tokens == [A] and greedy.score == pytest.approx(math.log(0.24), abs=1e-5)
    assert beam.tokens == [B] and beam.score == pytest.approx(math.log(0.36), abs=1e-5)


def test_n_best_is_sorted_and_distinct():
    model = BigramModel(TRAP)
    src, lengths, limit = one_sentence()
    hyps = beam_search(model, src, lengths, limit, beam_size=3, n_best=3)[0]
    assert len(hyps) == 3
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert len({tuple(h.tokens) for h in hyps}) == 3
    assert hyps[0].tokens == [B] and hyps[1].tokens == [A]


def test_max_length_forces_eos():
    model = BigramModel({BOS_ID: {A: 1.0}, A: {A: 0.99, EOS_ID: 0.01}})
    src, lengths, _ = one_sentence()
    assert greedy_search(model, src, lengths, torch.tensor([4]))[0][0].tokens == [A, A, A]  # + forced EOS = 4
    assert beam_search(model, src, lengths, torch.tensor([4]), beam_size=1)[0][0].tokens == [A, A, A]
    beam = beam_search(model, src, lengths, torch.tensor([4]), beam_size=3, n_best=3)[0]
    assert all(len(h.tokens) <= 3 for h in beam) and beam[0].tokens == [A]


def test_length_penalty_changes_the_ranking():
    # short: A EOS = 0.5 (2 tokens with EOS); long: B A EOS = 0.5 * 0.9 * 1.0 = 0.45 (3 tokens)
    table = {BOS_ID: {A: 0.5, B: 0.5}, A: {EOS_ID: 1.0}, B: {A: 0.9, EOS_ID: 0.1}}
    model = BigramModel(table)
    src, lengths, limit = one_sentence()
    raw = beam_search(model, src, lengths, limit, beam_size=3, n_best=2, alpha=0.0)[0]
    assert [h.tokens for h in raw] == [[A], [B, A]]
    assert raw[0].score == pytest.approx(math.log(0.5), abs=1e-5)
    # alpha 2: log(0.5) / (7/6)^2 = -0.509 < log(0.45) / (8/6)^2 = -0.449, so the longer output wins
    penalized = beam_search(model, src, lengths, limit, beam_size=3, n_best=2, alpha=2.0)[0]
    assert [h.tokens for h in penalized] == [[B, A], [A]]
    assert penalized[0].score == pytest.approx(math.log(0.45) / length_penalty(3.0, 2.0), abs=1e-5)
    assert penalized[1].score == pytest.approx(math.log(0.5) / length_penalty(2.0, 2.0), abs=1e-5)
    assert length_penalty(2.0, 1.0) == pytest.approx(7 / 6)


def tiny_model(attention: str) -> Seq2Seq:
    torch.manual_seed(3)
    config = ModelConfig(embedding_dim=16, hidden_size=24, encoder_layers=1, decoder_layers=2, attention=attention)
    return Seq2Seq(config, 30, 30).eval()


def sources():
    torch.manual_seed(4)
    src = torch.randint(4, 30, (5, 9))
    lengths = torch.tensor([9, 3, 6, 1, 7])
    for i, n in enumerate(lengths.tolist()):
        src[i, n:] = PAD_ID
    return src, lengths


@pytest.mark.parametrize("attention", ["none", "luong", "bahdanau"])
def test_beam_size_one_equals_greedy(attention):
    model = tiny_model(attention)
    src, lengths = sources()
    limits = max_output_lengths(lengths, 2.0, 5)
    with torch.inference_mode():
        greedy = greedy_search(model, src, lengths, limits, alpha=0.6)
        beam = beam_search(model, src, lengths, limits, beam_size=1, alpha=0.6)
    for g, b in zip(greedy, beam, strict=True):
        assert g[0].tokens == b[0].tokens
        assert g[0].score == pytest.approx(b[0].score, abs=1e-4)


@pytest.mark.parametrize("attention", ["none", "luong", "bahdanau"])
@pytest.mark.parametrize("beam_size", [2, 5])
def test_batched_beam_search_equals_one_sentence_at_a_time(attention, beam_size):
    model = tiny_model(attention)
    src, lengths = sources()
    limits = max_output_lengths(lengths, 2.0, 5)
    with torch.inference_mode():
        batched = beam_search(model, src, lengths, limits, beam_size, n_best=beam_size, alpha=0.6)
        for i in range(src.size(0)):
            n = int(lengths[i])
            single = beam_search(
                model, src[i : i + 1, :n], lengths[i : i + 1], limits[i : i + 1], beam_size, beam_size, 0.6
            )
            assert [h.tokens for h in single[0]] == [h.tokens for h in batched[i]]
            assert [h.score for h in single[0]] == pytest.approx([h.score for h in batched[i]], abs=1e-4)


@pytest.mark.parametrize("drop_fraction", [1, 8, 10**9])
def test_greedy_sentences_end_where_they_end_whenever_their_rows_are_dropped(monkeypatch, drop_fraction, one_thread):
    """Greedy search keeps ended sentences' rows until DROP_FRACTION of the batch has ended (1: until all have,
    10**9: at once); what an ended row computes after its end never reaches its sentence's translation."""
    monkeypatch.setattr(search_module, "DROP_FRACTION", drop_fraction)
    model = tiny_model("luong")
    generator = torch.Generator().manual_seed(3)
    lengths = torch.arange(1, 21)
    src = torch.full((20, 20), PAD_ID)
    for i, n in enumerate(lengths.tolist()):
        src[i, :n] = torch.randint(4, 30, (n,), generator=generator)
    limits = max_output_lengths(lengths, 1.0, 1)  # every sentence ends at another step
    with torch.inference_mode():
        batched = greedy_search(model, src, lengths, limits, alpha=0.6)
        for i, n in enumerate(lengths.tolist()):
            alone = greedy_search(model, src[i : i + 1, :n], lengths[i : i + 1], limits[i : i + 1], alpha=0.6)[0][0]
            assert alone.tokens == batched[i][0].tokens, i
            assert alone.score == pytest.approx(batched[i][0].score, abs=1e-5), i
    assert len({len(h[0].tokens) for h in batched}) > 5


def test_beam_scores_are_the_model_log_probabilities():
    """With alpha = 0 a hypothesis's score is the sum of the step log-probabilities of its tokens (EOS included)."""
    model = tiny_model("luong")
    src, lengths = sources()
    limits = max_output_lengths(lengths, 2.0, 5)
    with torch.inference_mode():
        hyp = beam_search(model, src[:1], lengths[:1], limits[:1], beam_size=4, alpha=0.0)[0][0]
        tgt_in = torch.tensor([[BOS_ID] + hyp.tokens])
        tgt_out = torch.tensor([hyp.tokens + [EOS_ID]])
        logp = torch.log_softmax(model(src[:1], lengths[:1], tgt_in), dim=-1)
        total = logp.gather(-1, tgt_out.unsqueeze(-1)).sum().item()
    assert hyp.score == pytest.approx(total, abs=1e-3)


def test_outputs_respect_per_sentence_max_length():
    model = tiny_model("none")
    src, lengths = sources()
    limits = torch.tensor([3, 5, 2, 4, 6])
    with torch.inference_mode():
        for hyps in (greedy_search(model, src, lengths, limits), beam_search(model, src, lengths, limits, 3, 3)):
            for h, limit in zip(hyps, limits.tolist(), strict=True):
                assert all(len(x.tokens) + 1 <= limit for x in h)
                assert all(EOS_ID not in x.tokens and PAD_ID not in x.tokens for x in h)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8", "int8+bf16"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", ["none", "luong", "bahdanau"])
def test_a_sentence_searches_the_same_in_any_batch(attention, cell, precision, one_thread):
    """Bit for bit (one thread; fp32, bf16 autocast and row-wise int8): a sentence's hypotheses and scores do not
    depend on the sentences searched with it, so a server's answer does not depend on the requests batched with it
    or on what its cache held."""
    torch.manual_seed(5)
    config = ModelConfig(
        embedding_dim=32, hidden_size=64, encoder_layers=2, decoder_layers=2, cell=cell, attention=attention
    )
    # a target vocabulary of 256: beam 4's candidates are chosen by blocks (`_top_candidates`), 8 of 32 tokens
    model = prepare_for_search(Seq2Seq(config, 60, 256).eval(), precision)
    generator = torch.Generator().manual_seed(6)
    sentences = [torch.randint(4, 60, (n,), generator=generator).tolist() + [EOS_ID] for n in (1, 2, 5, 9, 14, 21, 33)]

    def search(group: list[int], beam_size: int) -> list[list[tuple[list[int], float]]]:
        lengths = torch.tensor([len(sentences[i]) for i in group])
        src = torch.full((len(group), int(lengths.max())), PAD_ID)
        for row, i in enumerate(group):
            src[row, : len(sentences[i])] = torch.tensor(sentences[i])
        limits = max_output_lengths(lengths, 1.5, 3)
        with torch.inference_mode(), autocast(precision, "cpu"):
            if beam_size == 1:
                hyps = greedy_search(model, src, lengths, limits, alpha=0.6)
            else:
                hyps = beam_search(model, src, lengths, limits, beam_size, n_best=2, alpha=0.6)
        return [[(h.tokens, h.score) for h in sentence] for sentence in hyps]

    groups = [[3, 0], [6, 2, 4], [1, 5, 3, 0, 6, 2, 4], [4, 4, 1, 1, 2]]
    for beam_size in (1, 4):
        alone = [search([i], beam_size)[0] for i in range(len(sentences))]
        for group in groups:
            assert search(group, beam_size) == [alone[i] for i in group], (group, beam_size)


def _candidates(m: int, k: int, vocab: int, ties: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam-step inputs: log-probabilities (m * k, vocab) and beam scores (m, k) far apart, the first sentence at
    its first step (one live beam), the second with EOS forced (one finite token per beam)."""
    g = torch.Generator().manual_seed(vocab + k)
    log_probs = torch.log_softmax(3 * torch.randn(m * k, vocab, generator=g), dim=-1)
    if ties:
        log_probs = log_probs.mul(2).round().div(2)
    log_probs[k : 2 * k] = NEG_INF
    log_probs[k : 2 * k, EOS_ID] = -0.5
    alive = -10 * torch.rand(m, k, generator=g)
    alive[0, 1:] = NEG_INF
    return log_probs, alive


@pytest.mark.parametrize("vocab", [8000, 1000, 240, 997, 60])
@pytest.mark.parametrize("k", [1, 5])
def test_top_candidates_are_the_best_of_all_candidates(vocab, k):
    """The block-wise top-k (and its fallback for vocabularies without a fitting block) gives what a full sort of
    every beam's every continuation gives."""
    log_probs, alive = _candidates(6, k, vocab)
    full = (alive.unsqueeze(-1) + log_probs.view(6, k, vocab)).view(6, -1)
    want_scores, want_ids = full.topk(2 * k, dim=-1)
    scores, ids = search_module._top_candidates(log_probs, alive, 2 * k)
    assert torch.equal(scores, want_scores)
    finite = want_scores > NEG_INF  # the -inf candidates tie: any of them will do
    assert torch.equal(ids[finite], want_ids[finite])
    assert torch.equal(full.gather(1, ids), scores)


def test_top_candidates_with_ties_are_distinct_and_scored_right():
    log_probs, alive = _candidates(6, 4, 4000, ties=True)
    full = (alive.unsqueeze(-1) + log_probs.view(6, 4, 4000)).view(6, -1)
    scores, ids = search_module._top_candidates(log_probs, alive, 8)
    assert torch.equal(scores, full.topk(8, dim=-1)[0])
    assert torch.equal(full.gather(1, ids), scores)
    assert all(len(set(row)) == 8 for row in ids.tolist())
