import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from nmt.encoder import RNN_CELLS
from nmt.rnn_loop import TrainingRNN


def _grads(rnn, runner, x, packed: bool, hidden=None):
    if packed:
        lengths = torch.tensor([3, 6, 1, 4])
        out, final = runner(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), hidden)
        out = out.data
    else:
        out, final = runner(x, hidden)
    finals = final if isinstance(final, tuple) else (final,)
    weights = [torch.arange(f.numel(), dtype=f.dtype).view_as(f) for f in finals]
    loss = out.square().sum() + sum((f * w).sum() for f, w in zip(finals, weights, strict=True))
    return [out, *finals, *torch.autograd.grad(loss, [x, *rnn.parameters()])]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("packed", [True, False])
def test_training_rnn_computes_what_torchs_rnn_does_values_and_gradients(cell, packed):
    """Training's step-by-step RNN (packed encoder, stepwise decoder) against torch's own, in double precision:
    outputs, final states (rows of different lengths keep their own), and the gradients of input and weights."""
    torch.manual_seed(0)
    rnn = RNN_CELLS[cell](5, 7, num_layers=2, bidirectional=packed, batch_first=True).double()
    x = torch.randn(4, 6 if packed else 1, 5, dtype=torch.double, requires_grad=True)
    hidden = None
    if not packed:  # the decoder's case: one step from a given state
        h = torch.randn(2, 4, 7, dtype=torch.double)
        hidden = (h, torch.randn(2, 4, 7, dtype=torch.double)) if cell == "lstm" else h
    expected = _grads(rnn, rnn, x, packed, hidden)
    got = _grads(rnn, TrainingRNN(rnn), x, packed, hidden)
    for a, b in zip(expected, got, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_training_rnn_drops_out_between_layers_only_in_training():
    torch.manual_seed(0)
    rnn = RNN_CELLS["lstm"](5, 7, num_layers=2, batch_first=True, dropout=0.5).eval()
    x = torch.randn(3, 4, 5)
    assert torch.allclose(TrainingRNN(rnn)(x)[0], rnn(x)[0], atol=1e-6)
    rnn.train()
    first, second = TrainingRNN(rnn)(x)[0], TrainingRNN(rnn)(x)[0]
    assert not torch.equal(first, second)
