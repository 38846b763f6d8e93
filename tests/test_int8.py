"""Row-wise int8: each layer computes what its float original does, within int8 rounding, and a row's result does
not depend on the rows computed with it."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.int8 import Int8Linear, Int8RNN, quantize, quantize_rows

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _h(final):
    return final[0] if isinstance(final, tuple) else final


def test_rows_are_scaled_each_by_its_own_largest_value():
    x = torch.tensor([[0.5, -1.0, 0.25], [100.0, 50.0, -25.0], [0.0, 0.0, 0.0]])
    values, scale = quantize_rows(x)
    assert values.dtype == torch.int8 and values[:, 1].tolist() == [-127, 64, 0]
    assert torch.allclose(values * scale, x, atol=0.5 / 127 * 100)
    assert torch.allclose(values[0] * scale[0], x[0], atol=0.5 / 127)  # a small row keeps its own resolution
    assert not scale.isnan().any() and values[2].eq(0).all()


def test_linear_matches_float_and_a_row_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    q = Int8Linear(linear)
    x = torch.randn(6, 3, 64)
    x[0, 0] *= 1000  # one row far larger than the others: a per-batch scale would flatten the rest
    out = q(x)
    assert out.shape == (6, 3, 48) and out.dtype == torch.float32
    ref = linear(x)
    assert ((out - ref).abs() / ref.abs().amax(-1, keepdim=True)).max() < 0.02
    for i in range(6):
        assert torch.equal(q(x[i : i + 1]), out[i : i + 1])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_matches_float_packed_and_padded(cell, bidirectional):
    torch.manual_seed(1)
    rnn = CELLS[cell](16, 32, num_layers=2, batch_first=True, bidirectional=bidirectional).eval()
    q = Int8RNN(rnn)
    x, lengths = torch.randn(5, 7, 16), torch.tensor([7, 3, 5, 1, 7])  # unsorted: the packed order differs
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        (out, final), (ref, ref_final) = q(packed), rnn(packed)
        out, ref = pad_packed_sequence(out, batch_first=True)[0], pad_packed_sequence(ref, batch_first=True)[0]
        assert out.shape == ref.shape and (out - ref).abs().max() < 0.03
        assert _h(final).shape == _h(ref_final).shape and (_h(final) - _h(ref_final)).abs().max() < 0.03
        layers = 2 * (1 + bidirectional)
        state = torch.randn(layers, 5, 32)
        hx = (state, torch.randn(layers, 5, 32)) if cell == "lstm" else state
        (out, final), (ref, ref_final) = q(x, hx), rnn(x, hx)
        assert out.shape == ref.shape and (out - ref).abs().max() < 0.03
        if cell == "lstm":
            assert (final[1] - ref_final[1]).abs().max() < 0.03  # the cell state too
        # one step at a time (as the decoder runs) is the same as all steps at once, bit for bit
        if not bidirectional:
            steps, h = [], hx
            for t in range(7):
                step, h = q(x[:, t : t + 1], h)
                steps.append(step)
            assert torch.equal(torch.cat(steps, dim=1), out) and torch.equal(_h(h), _h(final))
        # a row's outputs do not depend on the rows run with it
        sub = (hx[0][:, 1:3], hx[1][:, 1:3]) if cell == "lstm" else hx[:, 1:3]
        assert torch.equal(q(x[1:3], sub)[0], out[1:3])


def test_quantize_replaces_linears_and_rnns_except_those_kept():
    model = nn.ModuleDict({"rnn": nn.GRU(4, 8, batch_first=True), "out": nn.Linear(8, 3), "emb": nn.Embedding(5, 4)})
    quantize(model, keep=("out",))
    assert type(model["rnn"]) is Int8RNN and type(model["out"]) is nn.Linear and type(model["emb"]) is nn.Embedding
    with pytest.raises(ValueError, match="batch_first"):
        Int8RNN(nn.LSTM(4, 8))
