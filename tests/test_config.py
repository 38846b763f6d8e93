from pathlib import Path

import pytest

from nmt.config import Config, apply_overrides, config_from_dict, dump_config, load_config
from nmt.errors import NMTError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_validate():
    paths = sorted(Path("configs").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"tiny", "multi30k_de_en", "multi30k_de_en_attention", "multi30k_en_de"}
    for path in paths:
        assert isinstance(load_config(path), Config)


def test_shipped_configs_are_budgeted_in_epochs_or_steps():
    """A shipped config's result must not depend on the machine's speed: no wall-clock budget."""
    for path in sorted(Path("configs").glob("*.yaml")):
        assert load_config(path).train.max_minutes is None, f"{path} stops on train.max_minutes"


def test_default_config_is_the_context_vector_lstm():
    config = load_config("configs/multi30k_de_en.yaml")
    assert config.model.attention == "none" and config.model.cell == "lstm"
    assert load_config("configs/multi30k_de_en_attention.yaml").model.attention != "none"


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "model:\n  hiden_size: 10\n")
    with pytest.raises(NMTError, match=r"c\.yaml: unknown key 'model\.hiden_size'"):
        load_config(path)


def test_mistyped_value_names_key(tmp_path):
    path = write(tmp_path, "train:\n  lr: fast\n")
    with pytest.raises(NMTError, match=r"invalid value for 'train\.lr'"):
        load_config(path)


def test_invalid_choice(tmp_path):
    with pytest.raises(NMTError, match="model.cell"):
        load_config(write(tmp_path, "model:\n  cell: transformer\n"))


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = write(tmp_path, "train:\n  max_epochs: 3\n")
    config = load_config(path, ["train.max_epochs=7", "model.bidirectional=false", "data.path=/x"])
    assert config.train.max_epochs == 7 and config.model.bidirectional is False and config.data.path == "/x"


def test_override_of_unknown_key_is_an_error(tmp_path):
    with pytest.raises(NMTError, match="unknown key 'train.max_epoch'"):
        load_config(write(tmp_path, "{}"), ["train.max_epoch=2"])
    with pytest.raises(NMTError, match="KEY=VALUE"):
        apply_overrides({}, ["train.max_epochs"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(NMTError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(NMTError, match="not valid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(NMTError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_cross_field_checks():
    with pytest.raises(NMTError, match="joint"):
        config_from_dict({"tokenizer": {"joint": False}, "model": {"tie_src_tgt_embeddings": True}}, "x")
    with pytest.raises(NMTError, match="dot"):
        config_from_dict({"model": {"attention": "luong", "luong_score": "dot", "bidirectional": True}}, "x")
    with pytest.raises(NMTError, match="bridge 'copy'"):
        config_from_dict({"model": {"bridge": "copy", "encoder_layers": 2, "decoder_layers": 1}}, "x")
    with pytest.raises(NMTError, match="bridge 'copy'"):
        config_from_dict({"model": {"bridge": "copy", "hidden_size": 512, "encoder_hidden_size": 512}}, "x")
    config_from_dict({"model": {"bridge": "copy", "hidden_size": 512, "encoder_hidden_size": 256}}, "x")


def test_dump_roundtrip():
    config = load_config("configs/tiny.yaml")
    import yaml

    assert config_from_dict(yaml.safe_load(dump_config(config)), "x") == config


def test_readme_documents_every_config_key():
    from pathlib import Path

    root = Path(__file__).parent.parent
    readme = "".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    missing = []
    for section, field in Config.model_fields.items():
        keys = (
            [section]
            if not hasattr(field.annotation, "model_fields")
            else [f"{section}.{k}" for k in field.annotation.model_fields]
        )
        missing += [k for k in keys if f"`{k}`" not in readme]
    assert not missing, f"README config reference lacks {missing}"


def test_translation_batch_holds_a_fixed_number_of_hypotheses_unless_set():
    decode = Config().decode
    assert decode.batch_size is None
    assert decode.sentences_per_batch(5) == decode.batch_rows // 5
    assert decode.sentences_per_batch(1) == decode.batch_rows
    assert decode.sentences_per_batch(decode.batch_rows * 2) == 1
    fixed = config_from_dict({"decode": {"batch_size": 8}}, "test").decode
    assert fixed.sentences_per_batch(1) == fixed.sentences_per_batch(5) == 8
