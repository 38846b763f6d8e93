"""`nmt serve` with two models (de-en, en-de) as a LibreTranslate server: the unmodified libretranslatepy and
deep-translator clients, requests shaped as Mastodon sends them, LibreTranslate's error bodies, documents and HTML,
and several pairs in one batch. Real HTTP against `python -m nmt serve` on the two tiny models."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import pytest
import requests
from conftest import LT_KEY as KEY
from conftest import LT_MAX_CHARS as MAX_CHARS
from conftest import LT_MAX_TEXTS as MAX_TEXTS
from conftest import run_nmt
from deep_translator import LibreTranslator
from deep_translator.exceptions import AuthorizationException
from libretranslatepy import LibreTranslateAPI
from server_process import ServerProcess, raw_request

from serve.documents import split_document

pytestmark = pytest.mark.slow  # real clients against a running `nmt serve` with two tiny models

# as in LibreTranslate, each language is also a target of its own (the text comes back unchanged)
LANGUAGES = [
    {"code": "de", "name": "German", "targets": ["de", "en"]},
    {"code": "en", "name": "English", "targets": ["de", "en"]},
]
GERMAN = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Ein Kind lacht.", "Eine Frau liest ein Buch."]
ENGLISH = ["A man rides a bike.", "Two dogs play in the snow.", "A child is laughing."]
DOCUMENT = (
    "Ein Mann fährt Fahrrad. Zwei Hunde spielen im Schnee.\n\nEin Kind lacht.\n\nEine Frau liest ein Buch. Es regnet."
)
BATCH_LOG = re.compile(r"batch: (\d+) request\(s\), (\d+) sentence\(s\), (\d+) option group\(s\)")


@pytest.fixture
def server(lt_server) -> ServerProcess:
    return lt_server


@pytest.fixture
def keyed(lt_keyed_server) -> ServerProcess:
    return lt_keyed_server


@pytest.fixture(scope="module")
def cli(tiny_run, tiny_run_en_de, tmp_path_factory) -> dict[str, list[str]]:
    """What `nmt translate` prints (the models' default beam) for GERMAN with de-en and ENGLISH with en-de."""
    out = {}
    for pair, run, lines in (("de-en", tiny_run, GERMAN), ("en-de", tiny_run_en_de, ENGLISH)):
        source = tmp_path_factory.mktemp("cli") / "src.txt"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out[pair] = run_nmt("translate", "--model", run, "--input", source).stdout.splitlines()
    return out


def post(server: ServerProcess, path: str, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}{path}", timeout=60, **kwargs)


def _batches(server: ServerProcess) -> list[tuple[int, int, int]]:
    return [tuple(map(int, m.groups())) for m in BATCH_LOG.finditer(server.log())]


def start_tags(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    """The start tags of an HTML fragment with their attributes, whatever the order or quotes they are written in
    (how markup is written out is the HTML library's choice; the tags and attribute values are the promise)."""
    tags = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    parser = Tags()
    parser.feed(fragment)
    parser.close()
    return tags


# ----- the real clients ------------------------------------------------------------------------------------------


def test_libretranslatepy(server, keyed, cli):
    for url, key in ((server.url, None), (keyed.url, KEY)):
        lt = LibreTranslateAPI(url + "/", api_key=key)
        assert lt.languages() == LANGUAGES
        assert lt.translate(GERMAN[0], "de", "en") == cli["de-en"][0]
        assert lt.translate(ENGLISH[1], "en", "de") == cli["en-de"][1]
        detected = lt.detect(GERMAN[1])
        assert detected[0]["language"] == "de" and 50 < detected[0]["confidence"] <= 100
        assert [d["confidence"] for d in detected] == sorted((d["confidence"] for d in detected), reverse=True)


def test_libretranslatepy_without_or_with_a_wrong_key(keyed):
    for key, status, error in ((None, 400, "Please contact the server operator"), ("wrong", 403, "Invalid API key")):
        lt = LibreTranslateAPI(keyed.url + "/", api_key=key)
        assert lt.languages() == LANGUAGES  # as in LibreTranslate, the language list needs no key
        for call in (lambda: lt.translate(GERMAN[0], "de", "en"), lambda: lt.detect(GERMAN[0])):  # noqa: B023
            with pytest.raises(urllib.error.HTTPError) as caught:
                call()
            assert caught.value.code == status
            assert error in json.loads(caught.value.read())["error"]


def test_deep_translator(server, keyed, cli):
    # deep-translator always sends a key (it refuses to run without one): a server without a key ignores it
    for url, key in ((server.url, "any-key"), (keyed.url, KEY)):
        translator = LibreTranslator(source="de", target="en", api_key=key, custom_url=url + "/")
        assert translator.translate(GERMAN[0]) == cli["de-en"][0]
        assert translator.translate_batch(GERMAN[:2]) == cli["de-en"][:2]
        reverse = LibreTranslator(source="en", target="de", api_key=key, custom_url=url + "/")
        assert reverse.translate(ENGLISH[0]) == cli["en-de"][0]
    with pytest.raises(AuthorizationException):
        LibreTranslator(source="de", target="en", api_key="wrong", custom_url=keyed.url + "/").translate(GERMAN[0])


def test_mastodon_requests(keyed, cli):
    """As Mastodon's TranslationService::LibreTranslate sends them: JSON, a list of HTML texts, the key in the body,
    source auto (or the post's language); GET /languages with a JSON Content-Type and no body."""
    headers = {"Content-Type": "application/json"}
    response = requests.get(f"{keyed.url}/languages", headers=headers, timeout=10)
    assert response.status_code == 200 and response.json() == LANGUAGES
    texts = [f"<p>{GERMAN[0]}</p>", f'<p>{GERMAN[2]} <a href="https://x.example/@a" class="mention">@a</a></p>']
    for source in ("auto", "de"):
        body = {"q": texts, "source": source, "target": "en", "format": "html", "api_key": KEY}
        response = post(keyed, "/translate", data=json.dumps(body), headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["translatedText"][0] == f"<p>{cli['de-en'][0]}</p>"
        assert answer["translatedText"][1].startswith("<p>")
        assert ("a", {"href": "https://x.example/@a", "class": "mention"}) in start_tags(answer["translatedText"][1])
        if source == "auto":
            assert [d["language"] for d in answer["detectedLanguage"]] == ["de", "de"]
        else:
            assert "detectedLanguage" not in answer
    body = {"q": texts, "source": "auto", "target": "en", "format": "html", "api_key": "nope"}
    assert post(keyed, "/translate", json=body).status_code == 403  # Mastodon: QuotaExceededError


def test_api_key_field_whitespace_is_not_part_of_the_key(keyed, cli):
    """The body field follows the header's rule (serve.auth): surrounding whitespace is dropped, only whitespace is
    no key (400), whitespace inside is a wrong key (403); in JSON and in a form alike."""
    for key, status in ((f" {KEY}\t", 200), (f"{KEY}\n", 200), (" \t", 400), (f"{KEY[:3]} {KEY[3:]}", 403)):
        body = {"q": GERMAN[0], "source": "de", "target": "en", "api_key": key}
        for response in (post(keyed, "/translate", json=body), post(keyed, "/translate", data=body)):
            assert response.status_code == status, (key, response.text)
            if status == 200:
                assert response.json()["translatedText"] == cli["de-en"][0]


def test_key_is_ignored_without_a_server_key(server):
    for key in (None, "", "anything"):
        body = {"q": GERMAN[0], "source": "de", "target": "en", "api_key": key}
        assert post(server, "/translate", json=body).status_code == 200


# ----- request forms and answers ---------------------------------------------------------------------------------


def test_json_form_and_query_parameters_agree(server, cli):
    params = {"q": GERMAN[1], "source": "de", "target": "en"}
    answers = [
        post(server, "/translate", json=params),
        post(server, "/translate", data=params),  # application/x-www-form-urlencoded
        post(server, "/translate", files={k: (None, v) for k, v in params.items()}),  # multipart/form-data
        post(server, "/translate", params=params),  # query string, empty body (deep-translator)
        post(server, "/translate", params={"q": params["q"]}, data={"source": "de", "target": "en", "q": "x"}),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert response.json() == {"translatedText": cli["de-en"][1]}


def test_auto_detects_the_source_per_text_and_picks_the_model(server, cli):
    body = {"q": [GERMAN[0], ENGLISH[0]], "source": "auto", "target": "de"}
    answer = post(server, "/translate", json=body).json()
    assert answer["translatedText"] == [GERMAN[0], cli["en-de"][0]]  # German to German: the text as it is
    assert [d["language"] for d in answer["detectedLanguage"]] == ["de", "en"]
    body = {"q": "<p>Ein <b>Hund</b></p>", "source": "en", "target": "en", "format": "html", "alternatives": 1}
    assert post(server, "/translate", json=body).json() == {"translatedText": body["q"], "alternatives": []}
    body = {"q": ENGLISH[2], "source": "auto", "target": "de", "unknown": [1, 2]}  # unknown fields tolerated
    answer = post(server, "/translate", json=body).json()
    assert answer["translatedText"] == cli["en-de"][2]
    assert answer["detectedLanguage"]["language"] == "en" and 0 < answer["detectedLanguage"]["confidence"] <= 100


def test_alternatives(server, cli):
    """Alternatives come from the beam (beam_size = max(the model's 3, alternatives + 1)): with 2, the same search as
    the CLI's, so the same best translation; with 3, a beam of 4, whose best may differ."""
    for alternatives in (2, 3):
        query = {"q": GERMAN[3], "source": "de", "target": "en", "alternatives": alternatives}
        body = post(server, "/translate", json=query).json()
        if alternatives == 2:
            assert body["translatedText"] == cli["de-en"][3]
        assert 1 <= len(body["alternatives"]) <= alternatives and body["translatedText"] not in body["alternatives"]
        assert len(set(body["alternatives"])) == len(body["alternatives"])
    listed = post(server, "/translate", json={"q": GERMAN[:2], "source": "de", "target": "en", "alternatives": "1"})
    assert [len(a) for a in listed.json()["alternatives"]] == [1, 1]


def test_a_document_keeps_its_paragraphs_and_equals_sentence_by_sentence(server):
    response = post(server, "/translate", json={"q": DOCUMENT, "source": "de", "target": "en"})
    assert response.status_code == 200
    assert response.headers["X-Sentence-Count"] == "5"
    out = response.json()["translatedText"]
    assert len(out.split("\n\n")) == 3 and out.count("\n") == 4
    sentences, layout = split_document(DOCUMENT, "de", 400)
    one_by_one = [post(server, "/translate", json={"q": s, "source": "de", "target": "en"}) for s in sentences]
    assert out == layout.join([r.json()["translatedText"] for r in one_by_one])
    native = requests.post(f"{server.url}/predict", json={"text": DOCUMENT, "source": "de"}, timeout=60).json()
    assert native["translation"] == out


def test_html_keeps_its_markup(server, cli):
    fragment = (
        f'<p class="a">{GERMAN[0]} <b>{GERMAN[1]}</b></p><pre><code>x = "{GERMAN[2]}"</code></pre>'
        "<script>alert('<b>')</script><p>&lt;script&gt;</p>"
    )
    out = post(server, "/translate", json={"q": fragment, "source": "de", "target": "en", "format": "html"}).json()
    text = out["translatedText"]
    assert text.startswith(f'<p class="a">{cli["de-en"][0]} <b>') and text.count("<b>") == 2  # one in the script
    assert f'<pre><code>x = "{GERMAN[2]}"</code></pre>' in text and "<script>alert('<b>')</script>" in text
    assert "<script>" not in text.replace("<script>alert('<b>')</script>", "")  # escaped text stays text


# ----- several models in one server ------------------------------------------------------------------------------


def test_native_api_picks_the_pair(server, cli):
    url = f"{server.url}/predict"
    response = requests.post(url, json={"text": GERMAN[0]}, timeout=60)
    assert response.status_code == 400 and "de-en, en-de" in response.json()["detail"]
    for body, pair, i in (
        ({"text": GERMAN[0], "source": "de"}, "de-en", 0),
        ({"text": ENGLISH[1], "target": "de"}, "en-de", 1),
        ({"text": ENGLISH[2], "model": "tiny_en_de"}, "en-de", 2),
        ({"text": GERMAN[2], "model": "de-en", "source": "de", "target": "en"}, "de-en", 2),
    ):
        assert requests.post(url, json=body, timeout=60).json()["translation"] == cli[pair][i]
    response = requests.post(url, json={"text": GERMAN[0], "source": "fr"}, timeout=60)
    assert response.status_code == 400
    assert response.json()["detail"] == "no model for source 'fr': this server translates de-en, en-de"
    info = requests.get(f"{server.url}/info", timeout=10).json()
    assert [m["pair"] for m in info["models"]] == ["de-en", "en-de"] and "model" not in info
    assert requests.get(f"{server.url}/health", timeout=10).json() == {"status": "ok", "pairs": ["de-en", "en-de"]}


def test_pairs_and_options_share_a_batch_and_a_bad_request_fails_alone(server, cli):
    """Concurrent requests for both pairs, with different options and routes, some bad: each gets its own answer."""
    jobs = []
    for i in range(16):
        kind = i % 4
        if kind == 0:
            jobs.append((("/translate", {"q": GERMAN[i % 4], "source": "de", "target": "en"}), cli["de-en"][i % 4]))
        elif kind == 1:
            jobs.append((("/translate", {"q": ENGLISH[i % 3], "source": "en", "target": "de"}), cli["en-de"][i % 3]))
        elif kind == 2:
            body = {"texts": [GERMAN[i % 4]], "source": "de", "beam_size": 1}
            jobs.append((("/predict", body), None))
        else:
            jobs.append((("/translate", {"q": GERMAN[0], "source": "xx", "target": "en"}), 400))
    barrier = threading.Barrier(len(jobs))

    def send(job):
        (path, body), _ = job
        barrier.wait()
        return post(server, path, json=body)

    before = len(_batches(server))
    with ThreadPoolExecutor(len(jobs)) as pool:
        responses = list(pool.map(send, jobs))
    for ((path, _), expected), response in zip(jobs, responses, strict=True):
        if expected == 400:
            assert response.status_code == 400 and response.json() == {"error": "xx is not supported"}
        elif path == "/translate":
            assert response.status_code == 200 and response.json()["translatedText"] == expected
        else:
            assert response.status_code == 200 and len(response.json()["translations"]) == 1
    batches = _batches(server)[before:]
    assert sum(n for n, _, _ in batches) == 12  # the 4 bad requests never reached a worker
    assert any(groups > 1 for _, _, groups in batches), "no batch mixed pairs or options"


# ----- LibreTranslate's errors -----------------------------------------------------------------------------------

ALL = {"q": "Hallo", "source": "de", "target": "en"}
ERRORS = [
    ({}, 400, "Invalid request: missing q parameter"),
    ({"q": ""}, 400, "Invalid request: missing q parameter"),
    ({"q": []}, 400, "Invalid request: missing q parameter"),
    ({"q": "Hallo"}, 400, "Invalid request: missing source parameter"),
    ({"q": "Hallo", "source": "de"}, 400, "Invalid request: missing target parameter"),
    ({**ALL, "alternatives": "x"}, 400, "alternatives parameter is not a number"),
    ({**ALL, "alternatives": 4}, 400, "alternatives parameter must be <= 3"),
    ({**ALL, "q": ["a"] * (MAX_TEXTS + 1)}, 400, f"request (9) exceeds text limit ({MAX_TEXTS})"),
    ({**ALL, "q": "a" * (MAX_CHARS + 1)}, 400, f"request (2001) exceeds text limit ({MAX_CHARS})"),
    ({**ALL, "q": ["a", 5]}, 400, "q must be a string or a list of strings"),
    ({"q": "Hallo", "source": "fr", "target": "en"}, 400, "fr is not supported"),
    ({"q": "Hallo", "source": "DE", "target": "fr"}, 400, "fr is not supported"),
    ({**ALL, "q": "<b>" * 500 + "Hallo", "format": "html"}, 400, "HTML nested deeper than 100 elements"),  # was a 500
    ({**ALL, "format": "xml"}, 400, "xml format is not supported"),
]  # fmt: skip


@pytest.mark.parametrize("body, status, error", ERRORS)
def test_translate_errors_as_libretranslate(server, body, status, error):
    response = post(server, "/translate", json=body)
    assert response.status_code == status
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"  # a charset may follow
    assert set(response.json()) == {"error"} and error in response.json()["error"]


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "body, headers, error",
    [
        (b'{"q": "a"', JSON, "Failed to decode JSON object"),
        (b'["q"]', JSON, "Invalid JSON format"),
        (b"", JSON, "Failed to decode JSON object"),
        (b'{"q": "\\ud800", "source": "de", "target": "en"}', JSON, "not valid Unicode"),
        (b"q=Hallo&source=de", {"Content-Type": "application/x-www-form-urlencoded"}, "missing target parameter"),
        (b"q=Hallo&source=de", {}, "missing q parameter"),  # no form Content-Type: not read as a form
        (b"\xff\xfe", {"Content-Type": "text/plain"}, "missing q parameter"),
    ],
)  # fmt: skip
def test_raw_bodies(server, body, headers, error):
    """The bytes and headers as given (http.client: no client library adds or guesses a Content-Type)."""
    status, _, answer = raw_request(server.port, "POST", "/translate", body, headers)
    assert status == 400 and error in json.loads(answer)["error"]


def test_detect_and_errors(server, keyed):
    assert post(server, "/detect", json={"q": ENGLISH[1]}).json()[0]["language"] == "en"
    assert post(server, "/detect", data={"q": GERMAN[1]}).json()[0]["language"] == "de"
    assert post(server, "/detect", json={"q": "12345"}).json() == [{"confidence": 0.0, "language": "de"}]
    assert post(server, "/detect", json={}).json() == {"error": "Invalid request: missing q parameter"}
    assert post(keyed, "/detect", json={"q": "Hallo"}).status_code == 400
    assert post(keyed, "/detect", json={"q": "Hallo", "api_key": KEY}).status_code == 200
    # the native routes keep X-API-Key; the LibreTranslate ones do not read the header
    assert post(keyed, "/translate", json={"q": "Hallo", "source": "de", "target": "en"},
                headers={"X-API-Key": KEY}).status_code == 400  # fmt: skip
    assert requests.get(f"{keyed.url}/info", timeout=10).status_code == 401
    assert post(server, "/translate", json={"q": "x" * 3 * 1024 * 1024}).json() == {
        "error": "request body over the limit of 1048576 bytes"
    }


def test_form_line_endings_become_newlines_as_in_libretranslate(server):
    text = f"{GERMAN[0]}\r\n\r\n{GERMAN[2]}\r\n"
    form = post(server, "/translate", data={"q": text, "source": "de", "target": "en"}).json()["translatedText"]
    as_json = post(server, "/translate", json={"q": text, "source": "de", "target": "en"}).json()["translatedText"]
    assert "\r" not in form and form.count("\n") == 2 and not form.endswith("\n")
    assert as_json.count("\r\n") == 3 and as_json.replace("\r\n", "\n").rstrip("\n") == form
