import pytest

from nmt.config import ModelConfig
from nmt.flops import forward_flops, measure_matmul_peak, training_flops


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
    assert forward_flops(config, vocab, [3], [2]) == expected
    assert training_flops(config, vocab, [3], [2]) == 3 * expected


def test_attention_adds_per_position_pair_work():
    base = dict(embedding_dim=8, hidden_size=8, encoder_layers=1, decoder_layers=1, bidirectional=False)
    luong = ModelConfig(attention="luong", input_feeding=False, **base)
    short = forward_flops(luong, 20, [2, 2], [3, 3])
    long = forward_flops(luong, 20, [4, 2], [3, 3])
    assert long > short
    gru = ModelConfig(cell="gru", attention="luong", input_feeding=False, **base)
    assert forward_flops(gru, 20, [2], [3]) < forward_flops(luong, 20, [2], [3])


def test_matmul_peak_is_measured():
    # GFLOP/s: above what any CPU does even on a crowded machine, below a petaflop (a unit slip fails either way)
    assert 0.1 < measure_matmul_peak(seconds=0.2, sizes=(256,)) < 1e6


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong"])
def test_flops_grow_linearly_with_tokens(attention):
    config = ModelConfig(attention=attention, bridge="zero")
    one = forward_flops(config, 100, [5], [5])
    assert forward_flops(config, 100, [5, 5], [5, 5]) == 2 * one
