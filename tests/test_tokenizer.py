import pytest

from nmt.config import TokenizerConfig
from nmt.errors import NMTError
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, train_sentencepiece

SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "A man rides a bike.", "Two dogs play."] * 50


def test_train_save_load_roundtrip(tmp_path):
    tok = train_sentencepiece(iter(SENTENCES), tmp_path / "spm.model", TokenizerConfig(vocab_size=60))
    assert (tmp_path / "spm.model").is_file()
    assert (tok.sp.pad_id(), tok.sp.unk_id(), tok.sp.bos_id(), tok.sp.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    ids = tok.encode(["Zwei Hunde spielen im Schnee."])
    assert all(i > EOS_ID for i in ids[0])
    assert tok.decode(ids) == ["Zwei Hunde spielen im Schnee."]
    again = Tokenizer.load(tmp_path / "spm.model")
    assert again.encode(["Ein Mann."]) == tok.encode(["Ein Mann."])


def test_missing_or_corrupt_model(tmp_path):
    with pytest.raises(NMTError, match="missing tokenizer model"):
        Tokenizer.load(tmp_path / "none.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(NMTError, match=r"bad\.model"):
        Tokenizer.load(tmp_path / "bad.model")
