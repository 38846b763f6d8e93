"""Cleaning of the training pairs (`data.clean`): each filter on a small corpus with known bad lines, the counts,
the cached result, the tokenization cache key, and a training run that reports what was dropped."""

import json

import datasets
import numpy as np
import pytest

import nmt.cleaning
from nmt.cleaning import FILTERS, clean_indices, clean_split, letter_share
from nmt.config import CleanConfig, config_from_dict
from nmt.errors import NMTError
from nmt.token_cache import cached_tokenize

GOOD = ("Ein Hund läuft durch den Park.", "A dog runs through the park.")
# (source, target, the filter that drops it with every filter on; None: kept)
CORPUS = [
    (*GOOD, None),  # 0
    ("", "An empty source.", "empty"),  # 1
    ("   ", "A blank source.", "empty"),  # 2
    ("Zwei Katzen schlafen auf dem Sofa.", " \t", "empty"),  # 3
    ("Ein sehr langer Satz " * 12, "A very long sentence " * 12, "max_chars"),  # 4: 252 characters
    ("Ja.", "Yes, this is a much longer sentence than its source.", "max_ratio"),  # 5
    ('<div class="nav"><a href="/">Start</a></div>', '<div class="nav"><a href="/">Home</a></div>', "min_letters"),
    ("12345 / 678-90 !!", "12345 / 678-90 ??", "min_letters"),  # 7
    ("Hallo Welt und alle anderen", " Hallo Welt und alle anderen ", "same"),  # 8
    (*GOOD, "duplicates"),  # 9: pair 0 again
    ("Zwei Katzen schlafen auf dem Sofa.", "Two cats sleep on the sofa.", None),  # 10: a source seen before
    ("Two men are playing football in the rain.", "Zwei Männer spielen im Regen Fußball.", "language"),  # sides swapped
    ("Eine Frau liest ein Buch in der Küche.", "Une femme lit un livre dans la cuisine.", "language"),  # French
    ("Ein Kind &amp; sein Vater spielen mit einem roten Ball.", "A child &amp; his father play with a red ball.", None),
    (*GOOD, "duplicates"),  # 14
]
ALL_ON = CleanConfig(
    empty=True,
    same=True,
    duplicates=True,
    max_chars=200,
    max_ratio=3.0,
    min_letters=0.5,
    language=True,
    language_candidates=["fr"],
)


def corpus_dataset(rows=CORPUS):
    return datasets.Dataset.from_dict({"src": [r[0] for r in rows], "tgt": [r[1] for r in rows]})


def dropped_by(config: CleanConfig) -> list[int]:
    kept, _ = clean_indices(corpus_dataset(), config, "de", "en")
    return sorted(set(range(len(CORPUS))) - set(kept.tolist()))


def test_letter_share_counts_markup_digits_and_punctuation_as_non_letters():
    assert letter_share("Ein Hund") == 1.0
    assert letter_share("a1 b2") == 0.5
    assert letter_share("<b>ab</b>") == pytest.approx(2 / 9)
    assert letter_share("Tom &amp; Jerry") == pytest.approx(8 / 13)
    assert letter_share("   ") == 0.0
    assert letter_share("नमस्ते दुनिया") == 1.0  # Devanagari's vowel signs are combining marks: they count
    assert letter_share("你好，世界。") == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("setting", "dropped"),
    [
        ({"empty": True}, [1, 2, 3]),
        ({"max_chars": 200}, [4]),
        ({"max_chars": 251}, [4]),
        ({"max_chars": 252}, []),
        ({"max_ratio": 3.0}, [1, 2, 3, 5]),  # an empty side against a long one: ratio = the long side's length
        ({"min_letters": 0.5}, [1, 2, 3, 6, 7]),  # blank sides have no letters
        ({"same": True}, [8]),  # equal once the surrounding whitespace is gone
        ({"duplicates": True}, [9, 14]),
    ],
)
def test_each_filter_drops_exactly_its_lines(setting, dropped):
    assert dropped_by(CleanConfig(**setting)) == dropped


def test_the_language_filter_drops_sides_in_another_language():
    # 6: a German side that is only markup and "Start" reads as English; 8: German on both sides; 11: sides
    # swapped; 12: a French target, which lingua calls German when it may answer only German or English
    assert dropped_by(CleanConfig(language=True)) == [6, 8, 11, 12]
    assert dropped_by(CleanConfig(language=True, language_candidates=["fr"])) == [6, 8, 11, 12]
    only_pair = nmt.cleaning.LanguageFilter("de", "en", [])
    with_french = nmt.cleaning.LanguageFilter("de", "en", ["fr"])
    french = [CORPUS[12][1]]
    assert [x.name for x in only_pair.detector.detect_languages_in_parallel_of(french)] == ["GERMAN"]
    assert [x.name for x in with_french.detector.detect_languages_in_parallel_of(french)] == ["FRENCH"]
    assert only_pair.wrong([GOOD[0], GOOD[1]], [GOOD[1], GOOD[1]]).tolist() == [False, True]


def test_every_filter_on_counts_each_pair_under_the_first_filter_that_drops_it():
    kept, report = clean_indices(corpus_dataset(), ALL_ON, "de", "en")
    expected = [i for i, row in enumerate(CORPUS) if row[2] is None]
    assert kept.tolist() == expected == [0, 10, 13]
    counts = {name: sum(row[2] == name for row in CORPUS) for name in FILTERS}
    assert report.dropped == counts
    assert report.dropped == {
        "empty": 3,
        "max_chars": 1,
        "max_ratio": 1,
        "min_letters": 2,
        "same": 1,
        "duplicates": 2,
        "language": 2,
    }
    assert report.pairs == 15 and report.kept == 3
    # only the enabled filters are reported
    assert clean_indices(corpus_dataset(), CleanConfig(empty=True), "de", "en")[1].dropped == {"empty": 3}


def test_duplicates_use_hashes_across_batches(monkeypatch):
    monkeypatch.setattr(nmt.cleaning, "BATCH", 4)  # duplicates in other batches than their first
    rows = [(f"Satz {i % 5}", f"sentence {i % 5}", None) for i in range(23)]
    kept, report = clean_indices(corpus_dataset(rows), CleanConfig(duplicates=True), "de", "en")
    assert kept.tolist() == [0, 1, 2, 3, 4] and report.dropped == {"duplicates": 18}


def test_unknown_language_and_unknown_key_are_clear_errors():
    with pytest.raises(NMTError, match=r"lingua does not know the language 'xx' \(data.clean.language_candidates\)"):
        clean_indices(corpus_dataset(), CleanConfig(language=True, language_candidates=["xx"]), "de", "en")
    with pytest.raises(NMTError, match=r"lingua does not know the language 'src' \(data.src_lang\)"):
        clean_indices(corpus_dataset(), CleanConfig(language=True), "src", "tgt")
    with pytest.raises(NMTError, match=r"my\.yaml: unknown key 'data\.clean\.emtpy'"):
        config_from_dict({"data": {"clean": {"emtpy": True}}}, "my.yaml")
    with pytest.raises(NMTError, match=r"my\.yaml: invalid value for 'data\.clean\.max_ratio'"):
        config_from_dict({"data": {"clean": {"max_ratio": 0.5}}}, "my.yaml")


class CharTokenizer:
    vocab_size = 300
    model_bytes = b"chars"

    def encode(self, texts):
        return [[4 + ord(c) % 250 for c in t] for t in texts]


def test_cleaning_is_cached_and_its_settings_key_the_tokenization_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    ds = corpus_dataset()
    assert clean_split(ds, CleanConfig(), "de", "en") == (ds, None)  # nothing enabled: the split itself
    lines = []
    cleaned, report = clean_split(ds, CleanConfig(empty=True), "de", "en", lines.append)
    assert len(cleaned) == 12 and report.dropped == {"empty": 3}
    assert "cleaned training data: 15 pairs, 12 kept; dropped: empty 3" in lines[-1]

    def no_second_cleaning(*args, **kwargs):
        raise AssertionError("cleaned again")

    monkeypatch.setattr(nmt.cleaning, "clean_indices", no_second_cleaning)
    again, report_again = clean_split(ds, CleanConfig(empty=True), "de", "en", lines.append)
    assert again._fingerprint == cleaned._fingerprint and lines[-1].endswith("(cached)")
    assert (report_again.pairs, report_again.kept, report_again.dropped) == (15, 12, {"empty": 3})
    assert list(again["src"]) == list(cleaned["src"])
    monkeypatch.undo()
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    [result] = (tmp_path / "cache" / "cleaned").glob("*.npz")
    result.write_bytes(b"damaged")
    lines.clear()
    repaired, _ = clean_split(ds, CleanConfig(empty=True), "de", "en", lines.append)
    assert lines[0].startswith("cleaning training data") and list(repaired["src"]) == list(cleaned["src"])
    # the same pairs kept under other settings (a loose max_chars drops nothing more): another fingerprint
    other, _ = clean_split(ds, CleanConfig(empty=True, max_chars=1000), "de", "en")
    assert list(other["src"]) == list(cleaned["src"]) and other._fingerprint != cleaned._fingerprint
    assert len({ds._fingerprint, cleaned._fingerprint, other._fingerprint}) == 3
    root = tmp_path / "tokenized"
    _, hit = cached_tokenize(cleaned, CharTokenizer(), CharTokenizer(), "d:train", root=root)
    _, hit_again = cached_tokenize(again, CharTokenizer(), CharTokenizer(), "d:train", root=root)
    _, hit_other = cached_tokenize(other, CharTokenizer(), CharTokenizer(), "d:train", root=root)
    assert (hit, hit_again, hit_other) == (False, True, False)


def test_nothing_left_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    rows = [("", "x", None), ("y", " ", None)]
    with pytest.raises(NMTError, match="no pairs of training data left after cleaning .*empty 2.*data.clean"):
        clean_split(corpus_dataset(rows), CleanConfig(empty=True), "de", "en")


def test_kept_indices_are_sorted_int64():
    kept, _ = clean_indices(corpus_dataset(), CleanConfig(duplicates=True), "de", "en")
    assert kept.dtype == np.int64 and (np.diff(kept) > 0).all()


def test_a_training_run_reports_each_filter_in_its_log_and_metadata(tmp_path, monkeypatch, data_dir):
    """Every filter on, training from a dataset in the hub's layout with a configuration name; validation as it is."""
    from nmt.data import read_lines
    from nmt.training import load_run_data, train

    monkeypatch.setenv("NMT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("NMT_DATA_DIR", raising=False)
    de, en = read_lines(data_dir / "train.de")[:300], read_lines(data_dir / "train.en")[:300]
    rows = [{"de": s, "en": t} for s, t in zip(de, en, strict=True)] + [{"de": r[0], "en": r[1]} for r in CORPUS]
    valid = [{"de": "  ", "en": ""}] + [{"de": s, "en": t} for s, t in zip(de[:20], en[:20], strict=True)]
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    repo = tmp_path / "repo"
    for split, records in (("train", rows), ("validation", valid)):
        (repo / "de-en").mkdir(parents=True, exist_ok=True)
        ds = datasets.Dataset.from_list([{"translation": r} for r in records], features=features)
        ds.to_parquet(repo / "de-en" / f"{split}-00000-of-00001.parquet")
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: de-en\n  data_files:\n  - split: train\n    path: de-en/train-*\n"
        "  - split: validation\n    path: de-en/validation-*\n---\n"
    )
    config = config_from_dict(
        {
            "data": {"path": str(repo), "hub_config": "de-en", "clean": ALL_ON.model_dump() | {"max_chars": 240}},
            "tokenizer": {"vocab_size": 300},
            "model": {"embedding_dim": 16, "hidden_size": 24, "encoder_layers": 1, "decoder_layers": 1},
            "train": {"batch_tokens": 400, "max_steps": 2, "threads": 1},
            "decode": {"beam_size": 1},
        },
        "test",
    )
    train(config, tmp_path / "run", show_progress=False)
    meta = json.loads((tmp_path / "run" / "metadata.json").read_text())
    cleaning = meta["data"]["cleaning"]  # the 300 Multi30k pairs pass every filter at max_chars 240
    assert cleaning["dropped"] == {
        "empty": 3,
        "max_chars": 1,
        "max_ratio": 1,
        "min_letters": 2,
        "same": 1,
        "duplicates": 2,
        "language": 2,
    }
    assert cleaning["pairs"] == 315 and cleaning["kept"] == meta["data"]["train_pairs"] == 303
    log = (tmp_path / "run" / "train.log").read_text()
    assert (
        "315 pairs, 303 kept; dropped: empty 3, max_chars 1, max_ratio 1, min_letters 2, same 1, duplicates 2, " in log
    )

    def cache_files():
        return sorted(str(f) for root in ("hf", "cache") for f in (tmp_path / root).rglob("*") if f.is_file())

    before = cache_files()
    data = load_run_data(tmp_path / "run", config)  # from the caches now, adding no file to them
    assert [f for f in cache_files() if f not in before and not f.endswith(".lock")] == []
    assert len(data.valid_src) == 21 and data.valid_src[0] == "  "  # validation is not cleaned
    assert len(data.train) == 303 and data.report == meta["data"]
