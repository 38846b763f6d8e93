"""Several languages from one `nmt serve`: German to French through English (de-en, then en-fr), language codes as
LibreTranslate reads them, /frontend/settings and /suggest. Real HTTP against `python -m nmt serve` with three tiny
models (de-en, en-de, en-fr)."""

from __future__ import annotations

import pytest
import requests
from conftest import run_nmt
from libretranslatepy import LibreTranslateAPI
from server_process import ServerProcess

from nmt.config import DataConfig
from nmt.data import load_split
from serve.suggestions import read_suggestions

pytestmark = pytest.mark.slow  # a running `nmt serve` with three tiny models

GERMAN = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Ein Kind lacht."]


@pytest.fixture(scope="module")
def models(tiny_run, tiny_run_en_de, tiny_run_en_fr, tmp_path_factory):
    runs = tmp_path_factory.mktemp("pivot-runs")
    for name, run in (("de_en", tiny_run), ("en_de", tiny_run_en_de), ("en_fr", tiny_run_en_fr)):
        (runs / name).symlink_to(run, target_is_directory=True)
    return runs


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    directory = tmp_path_factory.mktemp("pivot")
    options = ["--threads", "1", "--batch-timeout", "0.01", "--suggestions", str(directory / "suggestions")]
    proc = ServerProcess.ready(models, directory / "server.log", *options)
    proc.suggestions = directory / "suggestions"
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def chained(tiny_run, tiny_run_en_fr, tmp_path_factory) -> list[str]:
    """What `nmt translate` prints for GERMAN with de-en, then for that with en-fr (each model's default beam)."""
    directory = tmp_path_factory.mktemp("chain")
    (directory / "de.txt").write_text("\n".join(GERMAN) + "\n", encoding="utf-8")
    english = run_nmt("translate", "--model", tiny_run, "--input", directory / "de.txt").stdout
    (directory / "en.txt").write_text(english, encoding="utf-8")
    return run_nmt("translate", "--model", tiny_run_en_fr, "--input", directory / "en.txt").stdout.splitlines()


def translate(server: ServerProcess, **body) -> requests.Response:
    return requests.post(f"{server.url}/translate", json=body, timeout=60)


def test_pivot_is_the_two_models_chained(server, chained):
    answer = translate(server, q=GERMAN, source="de", target="fr")
    assert answer.status_code == 200, answer.text
    assert answer.json()["translatedText"] == chained
    assert answer.headers["X-Sentence-Count"] == str(2 * len(GERMAN))  # both searches
    single = translate(server, q=GERMAN[1], source="de", target="fr").json()["translatedText"]
    assert single == chained[1]


def test_pivot_through_a_real_client_with_auto_detection(server, chained):
    lt = LibreTranslateAPI(server.url + "/")
    assert lt.translate(GERMAN[0], "de", "fr") == chained[0]
    answer = translate(server, q=GERMAN[:2], source="auto", target="fr").json()
    assert answer["translatedText"] == chained[:2]
    assert [d["language"] for d in answer["detectedLanguage"]] == ["de", "de"]


def test_pivot_keeps_markup_and_gives_alternatives(server, chained):
    html = translate(server, q=f"<p>{GERMAN[0]} <b>x</b></p>", source="de", target="fr", format="html")
    assert html.status_code == 200, html.text
    text = html.json()["translatedText"]
    assert text.startswith("<p>") and text.endswith("</p>") and "<b>" in text
    alternatives = translate(server, q=GERMAN[2], source="de", target="fr", alternatives=2).json()
    assert alternatives["translatedText"] == chained[2]
    assert len(alternatives["alternatives"]) <= 2 and chained[2] not in alternatives["alternatives"]


def test_languages_and_info_name_the_pivots(server):
    languages = {entry["code"]: entry["targets"] for entry in requests.get(f"{server.url}/languages").json()}
    assert languages == {"de": ["de", "en", "fr"], "en": ["de", "en", "fr"], "fr": ["fr"]}
    pairs = requests.get(f"{server.url}/info", timeout=10).json()["pairs"]
    assert pairs == {"direct": ["de-en", "en-de", "en-fr"], "pivot": ["de-fr"]}
    for source, target in (("fr", "de"), ("fr", "en")):  # no fr-en model: nothing leaves French
        answer = translate(server, q="Un homme.", source=source, target=target)
        assert answer.status_code == 400 and "not available as a target language" in answer.json()["error"]


@pytest.mark.parametrize("source, target", [("DE", "EN"), ("de-AT", "en-US"), ("de_DE", "En-Gb"), (" de ", "en")])
def test_language_codes_as_libretranslate_reads_them(server, source, target):
    plain = translate(server, q=GERMAN[0], source="de", target="en").json()["translatedText"]
    answer = translate(server, q=GERMAN[0], source=source, target=target)
    assert answer.status_code == 200, answer.text
    assert answer.json()["translatedText"] == plain


@pytest.mark.parametrize("code", ["pt-BR", "zh-Hans", "xx", "d"])
def test_unserved_codes_are_named(server, code):
    answer = translate(server, q=GERMAN[0], source=code, target="en")
    assert answer.status_code == 400 and "is not supported" in answer.json()["error"]


def test_frontend_settings(server):
    settings = requests.get(f"{server.url}/frontend/settings", timeout=10).json()
    assert settings["suggestions"] is True and settings["keyRequired"] is False and settings["apiKeys"] is False
    assert settings["charLimit"] > 0 and settings["language"]["source"] == {"code": "auto", "name": "Auto Detect"}
    assert settings["language"]["target"]["code"] in ("en", "de", "fr")


def test_suggestions_are_kept_as_a_corpus_nmt_train_reads(server):
    pairs = [("Ein Hund rennt.", "A dog runs."), ('Er sagt "Hallo"\tund geht.', "He says “hello” and goes.")]
    for original, suggestion in pairs:
        answer = requests.post(
            f"{server.url}/suggest", data={"q": original, "s": suggestion, "source": "DE", "target": "en"}
        )
        assert answer.status_code == 200 and answer.json() == {"success": True}, answer.text
    corpus = load_split(DataConfig(path=str(server.suggestions / "de-en"), src_lang="de", tgt_lang="en"), "train")
    assert list(zip(corpus["src"], corpus["tgt"], strict=True)) == pairs
    for body, message in (
        ({"q": "a", "source": "de", "target": "en"}, "missing s parameter"),
        ({"q": "a", "s": "b", "source": "xx", "target": "en"}, "xx is not supported"),
        ({"q": ["a", "b"], "s": "b", "source": "de", "target": "en"}, "one string each"),
    ):
        answer = requests.post(f"{server.url}/suggest", json=body, timeout=10)
        assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert len(read_suggestions(server.suggestions / "de-en" / "train.jsonl")) == 2  # nothing else was stored


def test_suggestions_are_off_by_default(lt_server):
    answer = requests.post(f"{lt_server.url}/suggest", json={"q": "a", "s": "b", "source": "de", "target": "en"})
    assert answer.status_code == 403 and answer.json() == {"error": "Suggestions are disabled on this server."}
    assert requests.get(f"{lt_server.url}/frontend/settings", timeout=10).json()["suggestions"] is False
