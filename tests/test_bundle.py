import pytest
import torch

from nmt.bundle import load_weights, read_run_config, weights_payload
from nmt.config import ModelConfig
from nmt.errors import NMTError
from nmt.files import atomic_torch_save
from nmt.model import Seq2Seq, skip_initialization


def tiny_model() -> Seq2Seq:
    return Seq2Seq(ModelConfig(embedding_dim=8, hidden_size=8, encoder_layers=1, decoder_layers=1), 20, 20)


def test_weights_roundtrip(tmp_path):
    model = tiny_model()
    atomic_torch_save(tmp_path / "model.pt", weights_payload(model))
    other = tiny_model()
    load_weights(other, tmp_path / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))


@pytest.mark.parametrize("init", ["uniform", "default"])
def test_a_model_built_without_initialization_loads_the_same_weights(tmp_path, init):
    """load_bundle builds the model under skip_initialization: nothing drawn, every weight from the file, ties kept."""
    config = ModelConfig(embedding_dim=8, hidden_size=8, attention="luong", init=init, tie_src_tgt_embeddings=True)
    model = Seq2Seq(config, 20, 20)
    atomic_torch_save(tmp_path / "model.pt", weights_payload(model))
    rng = torch.get_rng_state()
    with skip_initialization():
        other = Seq2Seq(config, 20, 20)
    assert torch.equal(torch.get_rng_state(), rng)
    load_weights(other, tmp_path / "model.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    assert other.decoder.output.weight is other.decoder.embedding.weight
    assert other.encoder.embedding is other.decoder.embedding
    assert torch.equal(torch.nn.init.ones_(torch.zeros(2)), torch.ones(2))  # the mode ended with the block


def test_incompatible_format_version_names_the_file(tmp_path):
    payload = weights_payload(tiny_model())
    payload["format_version"] = 99
    atomic_torch_save(tmp_path / "model.pt", payload)
    with pytest.raises(NMTError, match=r"model\.pt has bundle format 99"):
        load_weights(tiny_model(), tmp_path / "model.pt")


def test_weights_of_another_shape_are_a_clear_error(tmp_path):
    atomic_torch_save(tmp_path / "model.pt", weights_payload(tiny_model()))
    bigger = Seq2Seq(ModelConfig(embedding_dim=8, hidden_size=16, encoder_layers=1, decoder_layers=1), 20, 20)
    with pytest.raises(NMTError, match="does not match the model"):
        load_weights(bigger, tmp_path / "model.pt")
    atomic_torch_save(tmp_path / "other.pt", {"weights": 1})
    with pytest.raises(NMTError, match="not an nmt weights file"):
        load_weights(tiny_model(), tmp_path / "other.pt")


def test_run_config_errors(tmp_path):
    with pytest.raises(NMTError, match="not a model directory"):
        read_run_config(tmp_path)
    (tmp_path / "config.yaml").write_text("model: [")
    with pytest.raises(NMTError, match="corrupt config"):
        read_run_config(tmp_path)
