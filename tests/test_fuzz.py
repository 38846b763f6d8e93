"""Property-based fuzzing of `nmt serve` over real HTTP (a subprocess on a free localhost port, the tiny model).

Every answer is held to the API's contract: never a 5xx; an error is JSON `{"detail": str}` with no stack trace
or file path in it; the status is the one that an independent model of the rules in README.md ("Serving") expects
(`expected_status`); a 200 has the documented shape. At the end the server must still give the answer it gave to
fixed requests before the fuzzing, and its log must hold no traceback. Hypothesis runs derandomized (the same
examples on every run, so CI is reproducible) and without an example database (nothing written to the repo).
"""

from __future__ import annotations

import email.message
import json
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from server_process import ServerProcess, raw_request

from serve.documents import split_document

pytestmark = pytest.mark.slow  # fuzzes a running `nmt serve` with thousands of requests

KEY = "fuzz-K3y"
MAX_CHARS, MAX_TEXTS, MAX_BEAM, DEFAULT_BEAM, MAX_BODY, MAX_LENGTH_CAP = 10_000, 8, 4, 3, 65_536, 1000
OPTIONS = [
    "--threads", "1", "--batch-timeout", "0.002", "--max-chars", str(MAX_CHARS), "--max-texts", str(MAX_TEXTS),
    "--max-beam-size", str(MAX_BEAM), "--max-body-bytes", str(MAX_BODY), "--log-text", "--log-level", "debug",
]  # fmt: skip
FIELDS = ("text", "texts", "beam_size", "n_best", "max_length", "source", "target", "model")
LT_PATHS = ("/translate", "/detect", "/languages", "/frontend/settings", "/suggest", "/translate_file")
LT_PREFIXES = ("/download_file/",)  # LibreTranslate's routes (with a name in the path): errors are {"error": ...}
MAX_SENTENCE_CHARS = 400  # the default of --max-sentence-chars
LEAKS = ("Traceback", "/work/", '.py"', "site-packages", 'File "')
JSON_HEADERS = {"Content-Type": "application/json"}
FIXED = [
    {"text": "Ein Mann fährt Fahrrad."},
    {"texts": ["Zwei Hunde spielen im Schnee.", "Eine Frau mit einem roten Hut."], "beam_size": 2, "n_best": 2},
]
SENT: Counter = Counter()  # answers by status over the module
SCALE = float(os.environ.get("NMT_FUZZ_SCALE", "1"))  # more examples for a longer hunt, e.g. NMT_FUZZ_SCALE=10


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=round(examples * SCALE),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


@dataclass
class Target:
    server: ServerProcess
    before: list[bytes]  # answers to FIXED before any fuzzing


def _fixed_answers(server: ServerProcess) -> list[bytes]:
    return [send(server, json.dumps(body).encode(), JSON_HEADERS)[2] for body in FIXED]


@pytest.fixture(scope="module", autouse=True)
def hypothesis_home(tmp_path_factory):
    """Hypothesis's caches (Unicode tables, constants) in a temporary directory, not .hypothesis/ in the repo."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.fixture(scope="module")
def target(tiny_run, tmp_path_factory) -> Target:
    server = ServerProcess(tiny_run, tmp_path_factory.mktemp("fuzz") / "server.log", *OPTIONS, api_key=KEY)
    try:
        server.wait_ready()
        target = Target(server, _fixed_answers(server))
        yield target
        still_translates(target)  # after every test of the module that ran, whatever their order or selection
    finally:
        server.stop()


# ----- the contract ----------------------------------------------------------------------------------------------


def send(
    server: ServerProcess,
    body: bytes | None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/predict",
    key: str | None = KEY,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (a dropped connection fails the test), checked against the contract."""
    all_headers = {"X-API-Key": key} if key is not None else {}
    all_headers.update(headers or {})
    status, answer_headers, data = raw_request(server.port, method, path, body, all_headers)
    SENT[status] += 1
    assert status < 500, f"{status} for {method} {path} {body[:200] if body else body!r}: {data[:300]!r}"
    text = data.decode("utf-8", "replace")
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in the answer: {text[:500]}"
    if status >= 400 and method != "HEAD":
        assert answer_headers.get("content-type", "").startswith("application/json"), (status, answer_headers, data)
        lt = path.split("?")[0] in LT_PATHS or path.startswith(LT_PREFIXES)
        detail = json.loads(data)["error" if lt else "detail"]
        assert isinstance(detail, str) and 0 < len(detail) <= 400, detail
    return status, answer_headers, data


def _blank(text: str) -> bool:
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp") for c in text)


def _valid_text(text: Any) -> bool:
    return (
        isinstance(text, str)
        and len(text) <= MAX_CHARS
        and not _blank(text)
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    )


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def expected_status(obj: Any) -> int:
    """200 or 422 for a parsed JSON body, from the rules in README.md ("Serving") ("API" and "Errors")."""
    if not isinstance(obj, dict) or set(obj) - set(FIELDS):
        return 422
    text, texts = obj.get("text"), obj.get("texts")
    if (text is None) == (texts is None):
        return 422
    if text is not None and not _valid_text(text):
        return 422
    if texts is not None and not (
        isinstance(texts, list) and 1 <= len(texts) <= MAX_TEXTS and all(_valid_text(t) for t in texts)
    ):
        return 422
    beam = obj.get("beam_size")
    if beam is not None and not _int_in(beam, 1, MAX_BEAM):
        return 422
    n_best, max_length = obj.get("n_best"), obj.get("max_length")
    if n_best is not None and not _int_in(n_best, 1, beam or 10**100):
        return 422
    if max_length is not None and not _int_in(max_length, 1, MAX_LENGTH_CAP):
        return 422
    for name, longest in (("source", 64), ("target", 64), ("model", 256)):
        if obj.get(name) is not None and not (isinstance(obj[name], str) and len(obj[name]) <= longest):
            return 422
    if obj.get("source") not in (None, "de") or obj.get("target") not in (None, "en"):
        return 400  # no model for that pair: this server translates de-en
    if obj.get("model") not in (None, "tiny", "de-en"):
        return 400
    if n_best is not None and n_best > (beam or DEFAULT_BEAM):
        return 422  # checked against the chosen model's default beam size
    return 200


class Malformed(ValueError):
    pass


def _reject(x: Any) -> Any:
    raise Malformed(x)


def _pairs(pairs: list) -> dict:
    if len({k for k, _ in pairs}) != len(pairs):
        raise Malformed("duplicate key")
    return dict(pairs)


def reference_parse(body: bytes) -> Any:
    """What strict JSON (RFC 8259, UTF-8, unique keys, no NaN/Infinity) makes of `body`; Malformed otherwise."""
    try:
        return json.loads(body.decode("utf-8-sig"), object_pairs_hook=_pairs, parse_constant=_reject)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Malformed(str(e)) from None


def _is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def expected_raw_status(body: bytes, content_type: str | None) -> int:
    if len(body) > MAX_BODY:
        return 413
    if not body or not _is_json_type(content_type):
        return 422  # not read as JSON: "the request body must be a JSON object (Content-Type: application/json)"
    try:
        return expected_status(reference_parse(body))
    except Malformed:
        return 400


def check_translation(obj: dict, headers: dict[str, str], data: bytes) -> None:
    """A 200 answer has the documented shape: one result per text, in order, n-best lists when asked."""
    answer = json.loads(data)
    single = obj.get("text") is not None
    count = 1 if single else len(obj["texts"])
    n_best = obj.get("n_best")
    texts = [obj["text"]] if single else obj["texts"]
    sentences = sum(len(split_document(t, "de", MAX_SENTENCE_CHARS)[0]) for t in texts)
    assert headers["x-sentence-count"] == str(sentences)
    keys = {"translation", "score"} if single else {"translations", "scores"}
    assert set(answer) == keys | ({"n_best"} if n_best is not None else set()), answer
    translations = [answer["translation"]] if single else answer["translations"]
    scores = [answer["score"]] if single else answer["scores"]
    assert len(translations) == len(scores) == count
    assert all(isinstance(t, str) for t in translations)
    assert all(isinstance(s, float) and math.isfinite(s) and s <= 0 for s in scores), scores
    if n_best is not None:
        lists = [answer["n_best"]] if single else answer["n_best"]
        assert len(lists) == count
        for hyps, best in zip(lists, translations, strict=True):
            assert len(hyps) == n_best and hyps[0]["translation"] == best, (n_best, hyps)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def fuzzed(run: Callable[[], None], at_least: int) -> None:
    """Run a Hypothesis test body; check it sent `at_least` requests (the fuzzing cannot silently vanish)."""
    before = SENT.total()
    run()
    assert SENT.total() - before >= at_least * min(SCALE, 1)


# ----- strategies ------------------------------------------------------------------------------------------------

WORDS = ["Ein", "Mann", "fährt", "Fahrrad", "Zwei", "Hunde", "spielen", "im", "Schnee", "Eine", "Frau", "mit",
         "einem", "roten", "Hut", "Kinder", "lachen", ".", ",", "!"]  # fmt: skip
EDGE = [
    " ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028",  # whitespace
    "😀", "👨‍👩‍👧‍👦", "🏳️‍🌈", "\U0001f3fd", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010ffff", "\ufffd", "\ufb01",  # emoji, astral, specials
    "שלום", "مرحبا بالعالم", "\u202e", "\u200f", "\u2066",  # right-to-left text and bidi controls
    "e\u0301", "\u0301\u0301\u0301", "Z\u0351\u0352\u0353\u0354",  # combining marks
    "\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\u2060",  # zero-width and invisible format characters
    "\x00", "\x01", "\x1b[31m", "\x7f", "\x85",  # NUL and control characters
    "\ud800", "\udfff",  # lone surrogates (sent as \\u escapes, or as invalid UTF-8 when not escaped)
    "../../etc/passwd", "<script>alert(1)</script>", "%s%n%x", "{}", '"', "\\", "'; DROP TABLE x; --",
]  # fmt: skip
pieces = st.one_of(
    st.sampled_from(WORDS).map(lambda w: w + " "),
    st.sampled_from(WORDS).map(lambda w: w + " "),
    st.sampled_from(EDGE),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=6),
)
texts = st.lists(pieces, min_size=1, max_size=10).map("".join) | st.lists(pieces, max_size=3).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(10**18, 10**1000),
    st.floats(),  # NaN and +-Infinity included: written as NaN/Infinity literals, which are not JSON
    st.sampled_from([-0.0, 2.0, 1e308, 5e-324]),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
options = {  # mostly in range
    "beam_size": st.integers(1, MAX_BEAM) | st.integers(1, MAX_BEAM) | st.sampled_from([0, -1, MAX_BEAM + 1, 10**30]),
    "n_best": st.integers(1, 2) | st.integers(1, MAX_BEAM + 1) | st.sampled_from([0, -5]),
    "max_length": st.integers(1, 12)
    | st.integers(1, 12)
    | st.sampled_from([0, -1, MAX_LENGTH_CAP, MAX_LENGTH_CAP + 1]),
}


@st.composite
def request_objects(draw: st.DrawFn) -> Any:
    """Mostly well-formed requests; some with one or two fields replaced by any JSON value; some not objects."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["text"] = draw(texts)
    else:
        body["texts"] = draw(st.lists(texts, min_size=1, max_size=3) | st.lists(texts, max_size=MAX_TEXTS + 1))
    for name, values in options.items():
        if draw(st.booleans()):
            body[name] = draw(values)
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        body[draw(st.sampled_from(FIELDS) | st.text(max_size=8))] = draw(json_values)
    return body


VALID_BODIES = [json.dumps(body).encode() for body in FIXED] + [b'{"text": "Hallo", "beam_size": 1}']
CONTENT_TYPES = [
    None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json",
    "application/json; charset=latin-1", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/xml", "", "*/*", "application/jsonx",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid body with a few bytes replaced, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(VALID_BODIES)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        if action == "replace" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        else:
            del data[i:]
    return bytes(data)


raw_bodies = st.one_of(st.binary(max_size=200), mutated(), mutated())


# ----- fuzzing ---------------------------------------------------------------------------------------------------


def test_fuzz_json_requests(target):
    """Generated request objects, JSON-encoded (escaped or raw UTF-8; NaN/Infinity literals for non-finite floats)."""

    @fuzz(2500)
    @given(obj=request_objects(), ascii_only=st.booleans())
    def run(obj: Any, ascii_only: bool) -> None:
        body = json.dumps(obj, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")
        if len(body) > MAX_BODY:
            expected = 413
        elif _has_non_finite(obj):
            expected = 400
        elif not ascii_only and re.search(rb"\xed[\xa0-\xbf]", body):  # a surrogate in raw UTF-8: not valid UTF-8
            expected = 400
        else:
            expected = expected_status(obj)
        status, headers, data = send(target.server, body, JSON_HEADERS)
        assert status == expected, (obj, data)
        if status == 200:
            check_translation(obj, headers, data)

    fuzzed(run, 2500)


@st.composite
def objects_with_duplicates(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, Any]]]:
    """A JSON object written by hand from (key, value) pairs, so that a key may appear twice."""
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(FIELDS), st.one_of(texts, st.integers(1, 3), st.lists(texts, max_size=2))),
            min_size=1,
            max_size=5,
        )
    )
    body = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
    return body.encode(), pairs


def test_fuzz_duplicate_keys(target):
    @fuzz(500)
    @given(case=objects_with_duplicates())
    def run(case: tuple[bytes, list]) -> None:
        body, pairs = case
        status, headers, data = send(target.server, body, JSON_HEADERS)
        if len({k for k, _ in pairs}) < len(pairs):
            assert status == 400 and "duplicate key" in json.loads(data)["detail"], data
        else:
            assert status == expected_status(dict(pairs)), (pairs, data)

    fuzzed(run, 500)


def test_fuzz_raw_bodies_and_content_types(target):
    """Arbitrary and mutated bytes (invalid UTF-8, truncated JSON, ...) under every kind of Content-Type."""

    @fuzz(1500)
    @given(body=raw_bodies, content_type=st.sampled_from(CONTENT_TYPES))
    def run(body: bytes, content_type: str | None) -> None:
        headers = {} if content_type is None else {"Content-Type": content_type}
        status, answer_headers, data = send(target.server, body, headers)
        assert status == expected_raw_status(body, content_type), (body, content_type, data)
        if status == 200:
            check_translation(reference_parse(body), answer_headers, data)

    fuzzed(run, 1500)


def test_fuzz_lengths_around_the_limit(target):
    """One long word (10,000 characters is the limit here) of ASCII, umlauts, emoji or invisible characters."""

    @fuzz(20)
    @given(n=st.integers(MAX_CHARS - 2, MAX_CHARS + 2), char=st.sampled_from(["x", "ä", "😀", "\u200b"]))
    def run(n: int, char: str) -> None:
        obj = {"text": char * n, "beam_size": 1, "max_length": 5}
        status, headers, data = send(target.server, json.dumps(obj, ensure_ascii=False).encode(), JSON_HEADERS)
        assert status == expected_status(obj), data
        if status == 200:
            check_translation(obj, headers, data)

    fuzzed(run, 15)


def test_fuzz_nesting_depth(target):
    @fuzz(60)
    @given(depth=st.integers(1, 30_000), where=st.sampled_from(["top", "texts", "extra"]))
    def run(depth: int, where: str) -> None:
        nested = "[" * depth + "]" * depth
        body = {"top": nested, "texts": f'{{"texts": {nested}}}', "extra": f'{{"text": "a", "x": {nested}}}'}[where]
        status, _, data = send(target.server, body.encode(), JSON_HEADERS)
        if len(body) > MAX_BODY:
            assert status == 413
        else:
            assert status == 422 or (status == 400 and b"nested too deeply" in data), (depth, where, data)

    fuzzed(run, 60)


def test_fuzz_methods_and_paths(target):
    paths = st.sampled_from(
        ["/predict", "/health", "/info", "/", "/docs", "/openapi.json", "/predict/", "/predict?x=1", "/%00", "/%ff",
         "/..%2f..%2fetc%2fpasswd", "//predict", "/shutdown", "/metrics", "/translate", "/detect", "/languages",
         "/translate?q=Hallo&source=de&target=en", "/languages?api_key=x", "/static/app.js", "/static/style.css",
         "/static/index.html", "/static/", "/static", "/static/nope.js", "/static/../serve/options.py",
         "/static/..%2f..%2fserve%2foptions.py", "/static/%2e%2e/app.py", "/static//etc/passwd", "/static/app.js%00",
         "/translate_file", "/translate_file?source=de&target=en", "/download_file/x.txt", "/download_file/",
         "/download_file/..%2f..%2fserve%2foptions.py", "/download_file/00000000-0000-4000-8000-000000000000.a.txt",
         "/download_file/%2e%2e", "/download_file/../../etc/passwd"]
    ) | st.text("abcxyz019-._~%/", max_size=12).map(lambda s: "/" + s)  # fmt: skip
    methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
    accepts = st.sampled_from([None, "text/html", "text/html,application/xhtml+xml,*/*;q=0.8", "application/json"])

    @fuzz(400)
    @given(method=methods, path=paths, body=st.sampled_from([None, b"", VALID_BODIES[0], b"{"]), accept=accepts)
    def run(method: str, path: str, body: bytes | None, accept: str | None) -> None:
        headers = {**(JSON_HEADERS if body else {}), **({"Accept": accept} if accept else {})}
        status, answer_headers, data = send(target.server, body, headers, method=method, path=path)
        if path.startswith("/static/") and status == 200:  # only the page's own files, never one outside
            assert path.split("?")[0] in ("/static/app.js", "/static/style.css", "/static/index.html"), path

    fuzzed(run, 400)


def _batch_lines(server: ServerProcess) -> int:
    return len(re.findall(r"nmt\.serve: batch: ", server.log()))


def test_fuzz_api_key_never_reaches_the_model(target):
    """Wrong, missing, near-miss and odd keys: always 401, on every protected route, and no search runs."""
    near = [KEY[:-1], KEY + "x", KEY.upper(), KEY.lower(), "x" + KEY[1:], KEY[::-1], "", KEY + KEY]
    keys = (
        st.none()
        | st.sampled_from(near)
        | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=24)
    )
    before = _batch_lines(target.server)

    paths = ["/predict", "/predict", "/health", "/info", "/", "/metrics", "/translate", "/detect"]

    @fuzz(400)
    @given(key=keys, path=st.sampled_from(paths))
    def run(key: str | None, path: str) -> None:
        assume(key is None or key.strip(" \t") != KEY)
        if path in LT_PATHS:  # the key travels in the body: missing is 400, wrong is 403 (LibreTranslate's)
            body = json.dumps({"q": "Hallo", "source": "de", "target": "en", "api_key": key}).encode()
            status, _, data = send(target.server, body, JSON_HEADERS, path=path, key=None)
            assert (status, b"API key" in data) == (400 if key in (None, "") else 403, True), (key, path, data)
            return
        method, body = ("POST", VALID_BODIES[0]) if path == "/predict" else ("GET", None)
        status, _, data = send(target.server, body, JSON_HEADERS, method=method, path=path, key=key)
        assert status == 401 and b"X-API-Key" in data, (key, path, data)

    fuzzed(run, 400)
    assert _batch_lines(target.server) == before, "a request without the right key reached the model"


# ----- the LibreTranslate routes ----------------------------------------------------------------------------------


def _alternatives(value: Any) -> int | None:
    """LibreTranslate's `max(0, int(value))`; None where it says "not a number"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return max(0, int(value))
    except (ValueError, OverflowError):
        return None


def expected_lt(obj: Any, path: str) -> set[int]:
    """The statuses LibreTranslate's rules allow for a parsed JSON body (several where detection decides)."""
    if not isinstance(obj, dict):
        return {400}  # "Invalid JSON format"
    key = obj.get("api_key")  # whitespace around a key is not part of it (serve.auth)
    if key is None or (isinstance(key, str) and not key.encode("latin-1", "replace").strip()):
        return {400}  # "Please contact the server operator to get an API key"
    if not isinstance(key, str) or key.encode("latin-1", "replace").strip() != KEY.encode():
        return {403}
    q = obj.get("q")
    if not q:
        return {400}
    if path == "/translate":
        if not obj.get("source") or not obj.get("target"):
            return {400}
        n = _alternatives(obj.get("alternatives", 0))
        if n is None or n > MAX_BEAM - 1:
            return {400}
    texts = q if isinstance(q, list) else [q]
    if not all(isinstance(t, str) for t in texts) or (isinstance(q, list) and len(q) > MAX_TEXTS):
        return {400}
    if any(len(t) > MAX_CHARS or any(0xD800 <= ord(c) <= 0xDFFF for c in t) for t in texts):
        return {400}
    if path == "/detect":
        return {200}
    source, target = (v.lower() if isinstance(v, str) else v for v in (obj["source"], obj["target"]))
    if source not in ("auto", "de", "en") or target not in ("de", "en"):
        return {400}
    if (obj.get("format") or "text") not in ("text", "html"):
        return {400}
    if source == target or (source, target) == ("de", "en"):
        return {200}  # a language into itself: the text as it is
    if source == "auto":
        return {200} if target == "en" else {200, 400}  # German detected is German; English has no en-de model
    return {400}  # this server translates de-en only


def check_lt(obj: dict, path: str, data: bytes) -> None:
    answer = json.loads(data)
    texts = obj["q"] if isinstance(obj["q"], list) else [obj["q"]]
    if path == "/detect":
        assert isinstance(answer, list) and answer and all(0 <= d["confidence"] <= 100 for d in answer), answer
        assert {d["language"] for d in answer} <= {"de", "en"}
        return
    best = answer["translatedText"]
    assert best == [x for x in best if isinstance(x, str)] if isinstance(obj["q"], list) else isinstance(best, str)
    if isinstance(obj["q"], list):
        assert len(best) == len(texts)
    assert ("detectedLanguage" in answer) == (obj["source"].lower() == "auto")
    assert ("alternatives" in answer) == (_alternatives(obj.get("alternatives", 0)) > 0)


lt_values = st.one_of(texts, st.sampled_from(["de", "en", "auto", "DE", "Auto", "fr", "", "html", "text"]), json_values)


@st.composite
def lt_objects(draw: st.DrawFn) -> Any:
    """Mostly well-formed LibreTranslate bodies (right key, served languages); some fields replaced by anything."""
    if draw(st.integers(0, 14)) == 0:
        return draw(json_values)
    body: dict[str, Any] = {"q": draw(texts | st.lists(texts, max_size=MAX_TEXTS + 1))}
    body["source"] = draw(st.sampled_from(["de", "de", "auto", "en"]))
    body["target"] = draw(st.sampled_from(["en", "en", "en", "de"]))
    body["api_key"] = draw(st.sampled_from([KEY] * 8 + [None, "", "x", KEY + " ", " \t", f"{KEY[:2]} {KEY[2:]}"]))
    if draw(st.booleans()):
        body["format"] = draw(st.sampled_from(["text", "html", "html", None, "xml"]))
    if draw(st.booleans()):
        body["alternatives"] = draw(st.integers(-2, MAX_BEAM) | st.sampled_from(["1", "x", 1.5, True, None, 10**30]))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        body[
            draw(st.sampled_from(["q", "source", "target", "format", "alternatives", "api_key"]) | st.text(max_size=6))
        ] = draw(lt_values)
    return body


def test_fuzz_libretranslate_json(target):
    @fuzz(800)
    @given(obj=lt_objects(), path=st.sampled_from(["/translate", "/translate", "/translate", "/detect"]))
    def run(obj: Any, path: str) -> None:
        body = json.dumps(obj, ensure_ascii=True).encode()
        status, _, data = send(target.server, body, JSON_HEADERS, path=path, key=None)
        expected = {413} if len(body) > MAX_BODY else expected_lt(obj, path)
        assert status in expected, (obj, data)
        if status == 200:
            check_lt(obj, path, data)

    fuzzed(run, 800)


@st.composite
def form_bodies(draw: st.DrawFn) -> tuple[bytes, str | None, str]:
    """Query strings and form bodies (urlencoded, multipart), well-formed or mutated, for both POST routes."""
    from urllib.parse import urlencode

    fields = {"q": draw(texts), "source": draw(st.sampled_from(["de", "auto", "xx"])), "target": "en"}
    if draw(st.booleans()):
        fields["api_key"] = draw(st.sampled_from([KEY, KEY, "", "nope"]))
    fields = {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for k, v in fields.items()}
    encoded = urlencode(fields)
    kind = draw(st.sampled_from(["form", "query", "multipart", "raw"]))
    if kind == "form":
        body, content_type, query = encoded.encode(), "application/x-www-form-urlencoded", ""
    elif kind == "query":
        body, content_type, query = b"", None, "?" + encoded
    elif kind == "multipart":
        parts = "".join(f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items())
        body, content_type, query = (parts + "--b--\r\n").encode(), "multipart/form-data; boundary=b", ""
    else:
        body, content_type, query = draw(raw_bodies), draw(st.sampled_from(CONTENT_TYPES)), ""
    if kind != "raw" and draw(st.booleans()):
        data = bytearray(body)
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=3))
        body = bytes(data)
    return body, content_type, query


def test_fuzz_libretranslate_forms_and_raw_bodies(target):
    """Never a 5xx, always `{"error": str}` on failure, whatever the body and its Content-Type."""

    @fuzz(600)
    @given(case=form_bodies(), path=st.sampled_from(["/translate", "/detect"]))
    def run(case: tuple[bytes, str | None, str], path: str) -> None:
        body, content_type, query = case
        headers = {} if content_type is None else {"Content-Type": content_type}
        status, _, data = send(target.server, body, headers, path=path + query, key=None)
        assert status in (200, 400, 403, 413), data

    fuzzed(run, 600)


# ----- regressions: each of these was a bug ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b'{"text": "a", "text": "b"}', 400, "duplicate key 'text'"),  # was 200, last key winning
        (b'{"text": "a", "texts": ["b"], "texts": null}', 400, "duplicate key 'texts'"),  # was 200 as a text request
        (b'{"text": "a", "beam_size": NaN}', 400, "NaN is not a JSON value"),  # was accepted as JSON
        (b'{"text": "a", "max_length": -Infinity}', 400, "-Infinity is not a JSON value"),
        (b'{"text": "a", "beam_size": ' + b"1" * 5000 + b"}", 400, "a number with too many digits"),
        (b'{"texts": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested too deeply"),  # was "error parsing the body"
        (b'{"text": "\xc3\x28"}', 400, "not valid UTF-8 at byte 10"),
        ('{"text": "a"}'.encode("utf-16"), 400, "not valid UTF-8 at byte 0"),
        (b'{"text": "a\x01b"}', 400, "at position 11"),  # was "at at position"; the rest is the json module's
        (b'{"text": "\\u200b\\u200d\\ufeff"}', 422, "text: empty or only whitespace or invisible characters"),
        (b'{"texts": ["a", "\\u202e \\u00ad"]}', 422, "texts: item 1: empty or only whitespace or invisible"),
        (b'{"text": "a", "beam_size": ' + b"7" * 1000 + b"}", 422, "beam_size: 777777777... (1000 digits) is over"),
        (b'{"text": "a", "beam_size": 2, "n_best": ' + b"9" * 3000 + b"}", 422, "n_best 999999999... (3000 digits)"),
        (b'{"text": "a", "' + b"k" * 5000 + b'": 1}', 422, "unknown field '" + "k" * 40 + "...'"),
        (json.dumps({"texts": [1] * 5000}).encode(), 422, "; and 4995 more"),  # was a 440 KB detail
        (b'{"text": "a", "beam_size": -0}', 422, "beam_size: "),  # what follows "beam_size: " is pydantic's
        (b'{"text": "a", "beam_size": 1e400}', 422, "beam_size: "),
        (b'\xef\xbb\xbf{"text": "Ein Hund."}', 200, ""),  # a UTF-8 byte order mark is ignored
        (b'{"text": "Ein Hund\\u0000 l\\u00e4uft \\ud83d\\ude00 \\u05e9\\u05dc\\u05d5\\u05dd"}', 200, ""),
    ],
    ids=[
        "duplicate-text", "duplicate-texts-null", "nan", "minus-infinity", "int-over-4300-digits", "nested-5000",
        "invalid-utf8", "utf16", "control-character", "zero-width-only", "bidi-and-soft-hyphen-only", "huge-beam",
        "huge-n-best", "long-unknown-key", "5000-errors", "minus-zero", "1e400", "bom", "nul-emoji-rtl",
    ],
)  # fmt: skip
def test_edge_cases(target, body, status, fragment):
    got, _, data = send(target.server, body, JSON_HEADERS)
    assert got == status, data
    if status != 200:
        assert fragment in json.loads(data)["detail"]


@pytest.mark.parametrize(
    "body, status",
    [(b"null", 422), (b"[]", 422), (b'[{"text": "a"}]', 422), (b'"text"', 422), (b"5", 422), (b"true", 422),
     (b"", 422), (b"   ", 400), (b'{"text": "a"} {"text": "b"}', 400)],
)  # fmt: skip
def test_top_level_values_that_are_not_one_object(target, body, status):
    assert send(target.server, body, JSON_HEADERS)[0] == status


def test_log_text_survives_deep_nesting(target):
    """--log-text re-reads the body for the log: a body nested too deeply for the parser broke the log line, the
    connection was reset and the server logged a traceback."""
    for body in (b"[" * 990 + b"]" * 990, b'{"texts": ' + b"[" * 3000 + b"]" * 3000 + b"}"):
        assert send(target.server, body, JSON_HEADERS)[0] in (400, 422)
    assert "Exception in ASGI application" not in target.server.log()


def still_translates(target: Target) -> None:
    """After the fuzzing: the same answers as before it, no traceback or 500 in the log."""
    assert _fixed_answers(target.server) == target.before
    log = target.server.log()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
    assert not re.search(r"(POST|GET) /\S* 5\d\d ", log)
    print(f"fuzzing: {SENT.total()} requests, by status {dict(sorted(SENT.items()))}")
