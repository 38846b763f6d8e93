import pytest

from nmt.config import ModelConfig
from nmt.flops import forward_flops, measure_matmul_peak, peak_for, search_flops, training_flops
from nmt.shapes import Shapes


def test_context_model_flops_by_hand():
    config = ModelConfig(
        cell="lstm",
        embedding_dim=4,
        hidden_size=8,
        encoder_layers=1,
        decoder_layers=1,
        bidirectional=False,
        attention="none",
        feed_context=True,
        bridge="zero",
        tie_embeddings=True,
    )
    vocab = 10
    # encoder: 2*4*8*(4+8) per token; decoder: input 4+8 -> 2*4*8*(12+8); readout (8+8+4)->4; output 4->10
    expected = 3 * 2 * 4 * 8 * 12 + 2 * (2 * 4 * 8 * 20 + 2 * 20 * 4 + 2 * 4 * 10)
    assert forward_flops(Shapes.of(config, vocab, vocab), [3], [2]) == expected
    assert training_flops(Shapes.of(config, vocab, vocab), [3], [2]) == 3 * expected


def test_attention_adds_per_position_pair_work():
    base = dict(embedding_dim=8, hidden_size=8, encoder_layers=1, decoder_layers=1, bidirectional=False)
    luong = ModelConfig(attention="luong", input_feeding=False, **base)
    short = forward_flops(Shapes.of(luong, 20, 20), [2, 2], [3, 3])
    long = forward_flops(Shapes.of(luong, 20, 20), [4, 2], [3, 3])
    assert long > short
    gru = ModelConfig(cell="gru", attention="luong", input_feeding=False, **base)
    assert forward_flops(Shapes.of(gru, 20, 20), [2], [3]) < forward_flops(Shapes.of(luong, 20, 20), [2], [3])


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
def test_matmul_peak_is_measured_per_precision(dtype):
    # GFLOP/s: above what any CPU does even on a crowded machine, below a petaflop (a unit slip fails either way)
    assert 0.01 < measure_matmul_peak(dtype, seconds=0.2, sizes=(256,)) < 1e6


def test_mixed_precision_is_bounded_by_its_fastest_format():
    peak, peaks = peak_for("int8+bf16", seconds=0.1)
    assert set(peaks) == {"int8", "bf16"} and peak == max(peaks.values())


def test_search_flops_are_the_encoder_once_and_the_decoder_per_beam():
    s = Shapes.of(ModelConfig(attention="luong", embedding_dim=8, hidden_size=8), 20, 20)
    assert search_flops(s, [4, 5], [3, 6], beam=1) == forward_flops(s, [4, 5], [3, 6])
    assert search_flops(s, [4, 5], [3, 6], beam=5) - search_flops(s, [4, 5], [3, 6], beam=1) == 4 * (
        forward_flops(s, [4, 5], [3, 6]) - forward_flops(s, [4, 5], [0, 0])
    )


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_flops_grow_linearly_with_tokens(attention):
    config = ModelConfig(attention=attention, bridge="zero")
    one = forward_flops(Shapes.of(config, 100, 100), [5], [5])
    assert forward_flops(Shapes.of(config, 100, 100), [5, 5], [5, 5]) == 2 * one


@pytest.mark.parametrize(
    "overrides",
    [
        dict(attention="none"),
        dict(attention="none", feed_context=False, bridge="zero"),
        dict(attention="bahdanau", cell="gru"),
        dict(attention="luong", input_feeding=True, encoder_hidden_size=6),
        dict(attention="luong", input_feeding=False, luong_score="dot", bidirectional=False),
    ],
)
def test_flop_shapes_are_the_built_model_shapes(overrides):
    """The FLOP count reads the sizes the modules were built with (Seq2Seq.shapes), not a re-derivation."""
    from nmt.model import Seq2Seq

    config = ModelConfig(embedding_dim=4, hidden_size=8, encoder_layers=2, decoder_layers=2, **overrides)
    model = Seq2Seq(config, 11, 13)
    s = model.shapes
    assert model.decoder.rnn.weight_ih_l0.shape[1] == s.decoder_input
    assert model.decoder.readout.in_features == s.readout_input
    assert model.decoder.output.weight.shape == (13, s.readout)
    assert model.encoder.rnn.weight_ih_l1.shape[1] == s.memory
    assert sum(m.in_features * m.out_features for m in model.bridge.maps) == s.bridge_maps * (
        s.encoder_layers * s.memory * s.decoder_layers * s.decoder_hidden
    )
    rnn_weights = sum(p.numel() for n, p in model.encoder.rnn.named_parameters() if n.startswith("weight"))
    assert forward_flops(s, [1], [0]) == 2 * rnn_weights + s.bridge_maps * 2 * (
        s.encoder_layers * s.memory * s.decoder_layers * s.decoder_hidden
    ) + (2 * s.memory * s.decoder_hidden if s.luong_general else 0) * 1 + (
        2 * s.memory * s.decoder_hidden if s.attention == "bahdanau" else 0
    )
