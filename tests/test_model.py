import itertools

import pytest
import torch

from nmt.config import ModelConfig
from nmt.decoder import rnn_step
from nmt.encoder import RNN_CELLS, reverse_padded
from nmt.model import Seq2Seq, count_parameters
from nmt.tokenizer import PAD_ID

SRC_V, TGT_V = 40, 50


def small(**kw) -> ModelConfig:
    base = dict(
        embedding_dim=12, hidden_size=16, encoder_layers=2, decoder_layers=1, dropout=0.0, embedding_dropout=0.0
    )
    base.update(kw)
    return ModelConfig(**base)


def batch():
    torch.manual_seed(0)
    src = torch.randint(4, SRC_V, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    src[1, 4:] = PAD_ID
    src[2, 2:] = PAD_ID
    tgt = torch.randint(4, TGT_V, (3, 5))
    return src, lengths, tgt


COMBOS = list(itertools.product(["lstm", "gru", "rnn"], [True, False], ["none", "bahdanau", "luong"]))


@pytest.mark.parametrize("cell,bidirectional,attention", COMBOS)
def test_shapes_and_step_equals_sequence(cell, bidirectional, attention):
    model = Seq2Seq(small(cell=cell, bidirectional=bidirectional, attention=attention), SRC_V, TGT_V).eval()
    src, lengths, tgt = batch()
    logits = model(src, lengths, tgt)
    assert logits.shape == (3, 5, TGT_V)
    memory, state = model.encode(src, lengths)
    steps = []
    for t in range(tgt.size(1)):  # the decoder step used by search, one token at a time
        out, state = model.decoder(tgt[:, t : t + 1], state, memory)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, dim=1), logits, atol=1e-5)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_padding_in_the_batch_does_not_change_a_sentence(attention):
    model = Seq2Seq(small(attention=attention), SRC_V, TGT_V).eval()
    src, lengths, tgt = batch()
    together = model(src, lengths, tgt)
    alone = model(src[2:, :2], lengths[2:], tgt[2:])
    assert torch.allclose(together[2:], alone, atol=1e-5)


@pytest.mark.parametrize(
    "kw",
    [
        dict(attention="luong", luong_score="general"),
        dict(attention="luong", luong_score="dot", bidirectional=False),
        dict(attention="bahdanau"),
        dict(attention="none", feed_context=True),
    ],
)
def test_beams_sharing_their_sentences_memory_step_as_with_a_copy_each(kw):
    """Beam search keeps one memory row per sentence for its beams (rows sentence-major): each step equals the
    step with the memory repeated for every beam."""
    model = Seq2Seq(small(**kw), SRC_V, TGT_V).eval()
    src, lengths, tgt = batch()
    beams = 4
    memory, state = model.encode(src, lengths)
    rows = torch.arange(3).repeat_interleave(beams)
    state = state.select(rows)
    tokens = torch.randint(4, TGT_V, (3 * beams, 1))
    shared, shared_state = model.decoder(tokens, state, memory)
    copied, copied_state = model.decoder(tokens, state, memory.select(rows))
    assert shared.shape == (3 * beams, 1, TGT_V)
    assert torch.allclose(shared, copied, atol=1e-6)
    assert torch.allclose(shared_state.hidden[0], copied_state.hidden[0], atol=1e-6)


def test_bridge_handles_layer_and_size_mismatch():
    config = small(encoder_layers=3, decoder_layers=2, hidden_size=20, encoder_hidden_size=8, bidirectional=True)
    model = Seq2Seq(config, SRC_V, TGT_V).eval()
    src, lengths, tgt = batch()
    memory, state = model.encode(src, lengths)
    h, c = state.hidden
    assert h.shape == (2, 3, 20) and c.shape == (2, 3, 20)
    assert memory.context.shape == (3, 16)  # top layer, both directions
    assert model(src, lengths, tgt).shape == (3, 5, TGT_V)


def test_copy_bridge_passes_each_layers_final_state_both_directions():
    config = small(encoder_layers=2, decoder_layers=2, hidden_size=16, encoder_hidden_size=8, bridge="copy")
    model = Seq2Seq(config, SRC_V, TGT_V).eval()
    src, lengths, _ = batch()
    final = model.encoder(src, lengths).final  # (layers * directions, batch, 8), layer-major
    _, state = model.encode(src, lengths)
    for enc, dec in zip(final, state.hidden, strict=True):  # h and c
        assert dec.shape == (2, 3, 16)
        for layer in range(2):
            assert torch.equal(dec[layer], torch.cat([enc[2 * layer], enc[2 * layer + 1]], dim=-1))
    assert not any("bridge" in name for name, _ in model.named_parameters())


def test_uniform_init_draws_every_parameter_from_the_range():
    model = Seq2Seq(small(init="uniform", init_range=0.05, attention="luong"), SRC_V, TGT_V)
    for name, p in model.named_parameters():
        assert p.abs().max() <= 0.05, name
        assert p.abs().max() > 0.03, name  # filled, not left at a smaller default
    assert torch.count_nonzero(model.encoder.embedding.weight[PAD_ID]) == 0
    assert torch.count_nonzero(model.decoder.embedding.weight[PAD_ID]) == 0
    default = Seq2Seq(small(attention="luong"), SRC_V, TGT_V)
    assert default.decoder.rnn.weight_hh_l0.abs().max() <= 16**-0.5  # PyTorch's LSTM default, unchanged


def test_zero_bridge_starts_from_zeros():
    model = Seq2Seq(small(cell="gru", bridge="zero"), SRC_V, TGT_V)
    src, lengths, _ = batch()
    _, state = model.encode(src, lengths)
    assert torch.count_nonzero(state.hidden) == 0


def test_context_vector_reaches_every_step():
    """With feed_context the decoder output at a late step depends on the source even with a zero bridge."""
    model = Seq2Seq(small(bridge="zero", feed_context=True), SRC_V, TGT_V).eval()
    src, lengths, tgt = batch()
    other = src.clone()
    other[0, 0] = (other[0, 0] + 1) % SRC_V + 4
    assert not torch.allclose(model(src, lengths, tgt)[0, -1], model(other, lengths, tgt)[0, -1])
    blind = Seq2Seq(small(bridge="zero", feed_context=False), SRC_V, TGT_V).eval()
    assert torch.allclose(blind(src, lengths, tgt)[0, -1], blind(other, lengths, tgt)[0, -1])


@pytest.mark.parametrize("context", ["final", "max", "mean"])
def test_context_vector_ignores_padding(context):
    """A sentence's context vector is the same alone and padded in a batch; pooling reads only real positions."""
    model = Seq2Seq(small(context=context), SRC_V, TGT_V).eval()
    src, lengths, _ = batch()
    memory, _ = model.encode(src, lengths)
    for row in range(3):
        n = int(lengths[row])
        alone, _ = model.encode(src[row : row + 1, :n], lengths[row : row + 1])
        assert torch.allclose(memory.context[row], alone.context[0], atol=1e-6)
    outputs = model.encoder(src, lengths).outputs[1, :4]  # row 1's real positions
    pooled = {"max": outputs.amax(0), "mean": outputs.mean(0)}.get(context)
    if pooled is not None:
        assert torch.allclose(memory.context[1], pooled, atol=1e-6)


def test_tied_embeddings_share_weights():
    model = Seq2Seq(small(tie_embeddings=True, tie_src_tgt_embeddings=True), TGT_V, TGT_V)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    assert model.encoder.embedding is model.decoder.embedding
    untied = Seq2Seq(small(tie_embeddings=False), TGT_V, TGT_V)
    assert count_parameters(untied) > count_parameters(model)


def test_reverse_padded_keeps_padding():
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    assert reverse_padded(ids, torch.tensor([4, 2])).tolist() == [[4, 3, 2, 1], [6, 5, 0, 0]]


def test_teacher_forcing_below_one_runs_stepwise():
    torch.manual_seed(0)
    model = Seq2Seq(small(), SRC_V, TGT_V).eval()
    src, lengths, tgt = batch()
    full = model(src, lengths, tgt, teacher_forcing=1.0)
    free = model(src, lengths, tgt, teacher_forcing=0.0)
    assert free.shape == full.shape
    assert not torch.allclose(free[:, 1:], full[:, 1:])


@pytest.mark.parametrize("dtype", ["bf16", "int8+bf16"])
@pytest.mark.parametrize(("attention", "score"), [("luong", "general"), ("luong", "dot"), ("bahdanau", "general")])
def test_search_casts_the_memory_once_with_the_same_steps(attention, score, dtype):
    """Under autocast without gradients `encode` casts the attention memory to bf16 once (autocast would cast it at
    every step); the decoder's steps are exactly those of the per-step casts, which training keeps."""
    from nmt.precision import prepare_for_search

    model = Seq2Seq(small(attention=attention, luong_score=score, bidirectional=False), SRC_V, TGT_V).eval()
    model = prepare_for_search(model, dtype)
    src, lengths, tgt = batch()
    logits = {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for grad in (True, False):
            with torch.set_grad_enabled(grad):
                memory, state = model.encode(src, lengths)
            assert (memory.outputs.dtype == torch.bfloat16) is not grad
            with torch.no_grad():
                steps = []
                for t in range(tgt.size(1)):
                    out, state = model.decoder(tgt[:, t : t + 1], state, memory)
                    steps.append(out)
            logits[grad] = torch.cat(steps, dim=1)
    assert torch.equal(logits[True], logits[False])


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
def test_attention_softmax_runs_in_fp32_under_bf16_autocast(attention):
    """bf16 training with the attention's softmax in bf16 ended 1.05 validation BLEU below fp32 on the attention
    config; in fp32 (forward and backward) it matched fp32 training (docs/performance.md)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class SoftmaxDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten._softmax, torch.ops.aten._softmax_backward_data):
                self.seen.append((func.overloadpacket.__name__, args[0].dtype))
            return func(*args, **(kwargs or {}))

    model = Seq2Seq(small(attention=attention), SRC_V, TGT_V)
    src, lengths, tgt = batch()
    with SoftmaxDtypes() as mode:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(src, lengths, tgt)
        logits.float().sum().backward()
    assert {name for name, _ in mode.seen} == {"_softmax", "_softmax_backward_data"}
    assert all(dtype == torch.float32 for _, dtype in mode.seen), mode.seen


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layers", [1, 3])
def test_rnn_step_is_one_step_of_the_rnn(cell, layers):
    """The cell-by-cell step (a one-position decoder step under bf16 autocast: search, and training below full
    teacher forcing) computes what the RNN module does, values and gradients, and drops out between layers only in
    training."""
    torch.manual_seed(0)
    rnn = RNN_CELLS[cell](6, 5, num_layers=layers, batch_first=True, dropout=0.5 if layers > 1 else 0.0).eval()
    x = torch.randn(3, 1, 6, requires_grad=True)
    h = torch.randn(layers, 3, 5)
    hidden = (h, torch.randn(layers, 3, 5)) if cell == "lstm" else h
    results = []
    for step in (rnn, lambda x, hidden: rnn_step(rnn, x, hidden)):
        x.grad = None
        out, state = step(x, hidden)
        states = state if isinstance(state, tuple) else (state,)
        (out.sum() + sum(s.square().sum() for s in states)).backward()
        results.append((out, *states, x.grad, rnn.weight_hh_l0.grad.clone()))
        rnn.zero_grad()
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-6)
    rnn.train()
    with torch.no_grad():
        trained = [rnn_step(rnn, x, hidden)[0] for _ in range(2)]
    assert torch.equal(trained[0], trained[1]) == (layers == 1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
@pytest.mark.parametrize("fp32_step_loop", [False, True])
def test_training_step_by_step_with_shared_gradients_equals_plain_autograd(
    cell, attention, fp32_step_loop, monkeypatch
):
    """Training on CPU runs the encoder and the stepwise decoder through `TrainingRNN` and `Shared` operands (the
    decoder's RNN too where training measured the loop faster: `fp32_step_loop`); loss and every parameter's
    gradient are those of torch's RNN and plain autograd (double precision)."""
    import nmt.decoder
    import nmt.encoder

    torch.manual_seed(0)
    config = small(cell=cell, attention=attention, decoder_layers=2, input_feeding=True, bidirectional=True)
    model = Seq2Seq(config, SRC_V, TGT_V).double()
    model.decoder.fp32_step_loop = fp32_step_loop
    src, lengths, tgt = batch()
    results = []
    for step_by_step in (True, False):
        monkeypatch.setattr(nmt.encoder, "trains_step_by_step", lambda *a, s=step_by_step: s)
        monkeypatch.setattr(nmt.decoder, "trains_step_by_step", lambda *a, s=step_by_step: s)
        logits = model(src, lengths, tgt)
        loss = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).sum()
        results.append([loss, *torch.autograd.grad(loss, list(model.parameters()))])
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs CPU bf16")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bf16_training_step_by_step_matches_plain_autograd_under_autocast(cell, monkeypatch):
    """Under bf16 autocast the stepwise decoder also runs its RNN through `TrainingRNN`: loss and gradients agree
    with torch's RNN and plain autograd under the same autocast, up to bf16 rounding (a wrong state or weight
    would be off by far more)."""
    import nmt.decoder
    import nmt.encoder

    torch.manual_seed(0)
    config = small(cell=cell, attention="luong", decoder_layers=2, input_feeding=True, bidirectional=True)
    model = Seq2Seq(config, SRC_V, TGT_V)
    src, lengths, tgt = batch()
    results = []
    for step_by_step in (True, False):
        monkeypatch.setattr(nmt.encoder, "trains_step_by_step", lambda *a, s=step_by_step: s)
        monkeypatch.setattr(nmt.decoder, "trains_step_by_step", lambda *a, s=step_by_step: s)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(src, lengths, tgt)
        loss = torch.log_softmax(logits.float(), -1).gather(-1, tgt.unsqueeze(-1)).sum()
        results.append([loss, *torch.autograd.grad(loss, list(model.parameters()))])
    for a, b in zip(*results, strict=True):
        assert (a - b).norm() <= 0.03 * b.norm() + 1e-6
