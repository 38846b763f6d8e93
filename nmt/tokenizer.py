"""SentencePiece subword vocabularies, joint or one per language, trained at `nmt train`."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmt.config import TokenizerConfig
from nmt.errors import NMTError
from nmt.files import atomic_write_bytes

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """Encodes one language's text into subword ids and decodes ids back into detokenized text."""

    def __init__(self, processor: spm.SentencePieceProcessor):
        self.sp = processor

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if not path.is_file():
            raise NMTError(f"missing tokenizer model: {path}")
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(path.read_bytes())
        except Exception:  # noqa: BLE001
            raise NMTError(f"cannot load tokenizer model {path}: not a SentencePiece model") from None
        if sp.pad_id() != PAD_ID or sp.eos_id() != EOS_ID or sp.bos_id() != BOS_ID:
            raise NMTError(f"tokenizer model {path} has unexpected special-token ids")
        return cls(sp)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def model_bytes(self) -> bytes:
        """The serialized SentencePiece model (what the tokenization cache's key hashes)."""
        return self.sp.serialized_model_proto()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.decode(ids)


def train_sentencepiece(sentences: Iterable[str], path: Path, config: TokenizerConfig) -> Tokenizer:
    """Train a SentencePiece model on up to `config.sample_size` sentences and save it atomically at `path`."""
    sample = (s for s in itertools.islice(sentences, config.sample_size) if s.strip())
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sample,
            model_writer=model,
            vocab_size=config.vocab_size,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            input_sentence_size=config.sample_size,
            shuffle_input_sentence=True,
            hard_vocab_limit=False,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise NMTError(f"SentencePiece training failed: {str(e).splitlines()[-1]}") from None
    atomic_write_bytes(path, model.getvalue())
    return Tokenizer.load(path)
