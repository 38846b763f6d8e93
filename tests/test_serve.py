"""`nmt serve` end to end: real HTTP against `python -m nmt serve` on a free localhost port, on the tiny model."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import REPO, run_nmt
from server_process import ServerProcess, free_port, group_alive, raw_bytes, raw_request

pytestmark = pytest.mark.slow  # every test starts `nmt serve` on the tiny model trained by the session

N_SENTENCES = 12
MAX_CHARS, MAX_TEXTS, MAX_BEAM, MAX_BODY = 300, 16, 5, 20_000
LIMIT_OPTIONS = [
    "--max-chars", str(MAX_CHARS), "--max-texts", str(MAX_TEXTS), "--max-beam-size", str(MAX_BEAM),
    "--max-body-bytes", str(MAX_BODY),
]  # fmt: skip
SERVER_OPTIONS = ["--threads", "1", "--batch-timeout", "0.03", "--log-level", "debug", *LIMIT_OPTIONS]
BATCH_LOG = re.compile(r"batch: (\d+) request\(s\), (\d+) sentence\(s\), (\d+) option group\(s\)")


@pytest.fixture(scope="module")
def sentences(data_dir) -> list[str]:
    lines = (data_dir / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    return lines[:N_SENTENCES]


@pytest.fixture(scope="module")
def cli(tiny_run, sentences, tmp_path_factory) -> dict:
    """What `nmt translate` prints for the sentences: beam 1, beam 3, and 3-best with beam 3."""
    source = tmp_path_factory.mktemp("cli") / "src.de"
    source.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    runs = {
        "beam1": ["--beam-size", "1"],
        "beam3": ["--beam-size", "3"],
        "nbest": ["--beam-size", "3", "--n-best", "3"],
    }
    with ThreadPoolExecutor(3) as pool:
        futures = {
            k: pool.submit(run_nmt, "translate", "--model", tiny_run, "--input", source, *a) for k, a in runs.items()
        }
        out = {k: f.result().stdout.splitlines() for k, f in futures.items()}
    nbest: list[list[tuple[str, float]]] = [[] for _ in sentences]
    for line in out.pop("nbest"):
        index, text, score = line.split(" ||| ")
        nbest[int(index)].append((text, float(score)))
    return {**out, "nbest": nbest}


def _start(tiny_run: Path, log_path: Path, *options: str, **kwargs) -> ServerProcess:
    return ServerProcess.ready(tiny_run, log_path, *options, **kwargs)


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    proc = _start(tiny_run, tmp_path_factory.mktemp("serve") / "server.log", *SERVER_OPTIONS)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def keyed_server(tiny_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-key") / "server.log"
    proc = _start(tiny_run, log, *SERVER_OPTIONS, "--log-text", api_key="k3y-Test")
    try:
        yield proc
    finally:
        proc.stop()


def _assert_clean_error(response: requests.Response, status: int, fragment: str) -> None:
    _assert_clean_answer(response.status_code, response.text, status, fragment)


def _assert_clean_answer(got: int, text: str, status: int, fragment: str) -> None:
    assert got == status, text
    detail = json.loads(text)["detail"]
    assert isinstance(detail, str) and fragment in detail, detail
    for leak in ("Traceback", str(REPO), "site-packages", ".py"):
        assert leak not in text


def _batches(server: ServerProcess) -> list[tuple[int, int, int]]:
    return [tuple(map(int, m.groups())) for m in BATCH_LOG.finditer(server.log())]


# ----- request shapes and equality with `nmt translate` -----------------------------------------------------------


def test_text_gives_translation_and_score(server, cli, sentences):
    response = server.post({"text": sentences[0]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"translation", "score"}
    assert body["translation"] == cli["beam3"][0]  # the model config's default beam size is 3
    assert isinstance(body["score"], float) and body["score"] < 0
    assert response.headers["X-Sentence-Count"] == "1"


@pytest.mark.parametrize("beam", [1, 3])
def test_matches_nmt_translate(server, cli, sentences, beam):
    response = server.post({"texts": sentences, "beam_size": beam})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"translations", "scores"}
    assert body["translations"] == cli[f"beam{beam}"]
    assert len(body["scores"]) == len(sentences)
    for i in (0, 5):  # one at a time: the same as in a list
        single = server.post({"text": sentences[i], "beam_size": beam}).json()
        assert single["translation"] == cli[f"beam{beam}"][i]
        assert single["score"] == pytest.approx(body["scores"][i], abs=1e-4)


def test_n_best_matches_nmt_translate(server, cli, sentences):
    body = server.post({"texts": sentences[:4], "beam_size": 3, "n_best": 3}).json()
    assert body["translations"] == cli["beam3"][:4]
    for hyps, expected in zip(body["n_best"], cli["nbest"][:4], strict=True):
        assert [h["translation"] for h in hyps] == [text for text, _ in expected]
        assert [h["score"] for h in hyps] == pytest.approx([score for _, score in expected], abs=1e-3)
    single = server.post({"text": sentences[0], "beam_size": 3, "n_best": 2}).json()
    assert [h["translation"] for h in single["n_best"]] == [text for text, _ in cli["nbest"][0][:2]]
    assert single["translation"] == single["n_best"][0]["translation"]


def test_max_length_shortens_output(server, sentences):
    long = max(sentences, key=len)
    full = server.post({"text": long, "beam_size": 1}).json()["translation"]
    short = server.post({"text": long, "beam_size": 1, "max_length": 3}).json()["translation"]
    assert len(short.split()) <= 3 < len(full.split())


# ----- bad input -------------------------------------------------------------------------------------------------

# A type or range error reads "field: <pydantic's message>": the server promises the field's name (and the 422), not
# pydantic's wording, which is its own and changes between its versions; the other messages are the server's.
BAD_JSON = [
    ({"text": 5}, "text: "),
    ({"texts": "Ein Hund."}, "texts: "),
    ({"texts": ["Ein Hund.", 3]}, "texts.1: "),
    ({"text": "Ein Hund.", "beam_size": "3"}, "beam_size: "),
    ({"text": "Ein Hund.", "beam_size": 2.0}, "beam_size: "),
    ({}, "exactly one of 'text'"),
    ({"beam_size": 2}, "exactly one of 'text'"),
    ({"text": "Ein Hund.", "texts": ["Ein Hund."]}, "exactly one of 'text'"),
    ({"text": ""}, "text: empty or only whitespace"),
    ({"text": " \t\n "}, "text: empty or only whitespace"),
    ({"texts": ["Ein Hund.", "   "]}, "texts: item 1: empty or only whitespace"),
    ({"texts": []}, "texts: "),
    ({"text": "a" * (MAX_CHARS + 1)}, f"{MAX_CHARS + 1} characters, over the limit of {MAX_CHARS}"),
    ({"texts": ["Ein Hund."] * (MAX_TEXTS + 1)}, f"{MAX_TEXTS + 1} texts, over the limit of {MAX_TEXTS}"),
    ({"text": "Ein Hund.", "beam_size": 0}, "beam_size: "),
    ({"text": "Ein Hund.", "beam_size": MAX_BEAM + 1}, f"over this server's maximum of {MAX_BEAM}"),
    ({"text": "Ein Hund.", "n_best": 0}, "n_best: "),
    ({"text": "Ein Hund.", "beam_size": 2, "n_best": 3}, "n_best 3 is larger than the beam size 2"),
    ({"text": "Ein Hund.", "beam_size": 1, "n_best": 2}, "n_best 2 is larger than the beam size 1"),
    ({"text": "Ein Hund.", "n_best": 4}, "n_best 4 is larger than the beam size 3"),
    ({"text": "Ein Hund.", "max_length": 0}, "max_length: "),
    ({"text": "Ein Hund.", "max_length": 10**30}, "max_length: "),
    ({"text": "Ein Hund.", "beam": 3}, "unknown field 'beam'"),
    ([{"text": "Ein Hund."}], "must be a JSON object"),
    ("Ein Hund.", "must be a JSON object"),
]


@pytest.mark.parametrize("body, fragment", BAD_JSON)
def test_invalid_request_is_422(server, body, fragment):
    _assert_clean_error(server.post(body), 422, fragment)


@pytest.mark.parametrize(
    "data, headers, status, fragment",
    [
        (b'{"text": "Ein Hund."', {"Content-Type": "application/json"}, 400, "malformed JSON"),
        (b'{"text": "\\ud800"}', {"Content-Type": "application/json"}, 422, "not valid Unicode"),
        (b'{"text": "Ein Hund."}', {}, 422, "Content-Type: application/json"),  # no content type
        (b"", {"Content-Type": "application/json"}, 422, "must be a JSON object"),
        (json.dumps({"text": "a" * MAX_BODY}).encode(), {"Content-Type": "application/json"}, 413, "over the limit"),
        (iter([b'{"text": "', b"a" * MAX_BODY, b'"}']), {"Content-Type": "application/json"}, 413, "over the limit"),
    ],
    ids=["malformed-json", "lone-surrogate", "no-content-type", "empty-body", "too-large", "too-large-chunked"],
)
def test_raw_bad_body(server, data, headers, status, fragment):
    """The bytes and headers as given (http.client: no client library adds a Content-Type); an iterable body is
    sent chunked."""
    got, _, answer = raw_request(server.port, "POST", "/predict", data, headers, timeout=30)
    _assert_clean_answer(got, answer.decode("utf-8"), status, fragment)


def test_wrong_method_and_path(server):
    assert requests.get(f"{server.url}/predict", timeout=10).status_code == 405
    assert requests.post(f"{server.url}/translation", json={"text": "a"}, timeout=10).status_code == 404
    wrong = requests.get(f"{server.url}/translate", timeout=10)  # LibreTranslate's error body (the words: Starlette's)
    assert wrong.status_code == 405 and list(wrong.json()) == ["error"] and isinstance(wrong.json()["error"], str)


# ----- health, info, schema --------------------------------------------------------------------------------------


def test_health_info_and_schema(server, tiny_run):
    assert server.get("/health").json() == {"status": "ok", "pairs": ["de-en"]}
    info = server.get("/info").json()["models"][0]
    meta = json.loads((tiny_run / "metadata.json").read_text())
    assert (info["src_lang"], info["tgt_lang"]) == ("de", "en")
    assert info["architecture"] == meta["architecture"]
    assert (info["src_vocab_size"], info["tgt_vocab_size"]) == (meta["src_vocab_size"], meta["tgt_vocab_size"])
    assert info["parameters"] == meta["parameters"] > 0
    assert info["best_valid_bleu"] == meta["best_valid_bleu"]
    assert info["nmt_version"] == meta["nmt_version"]
    assert info["decode"]["beam_size"] == 3
    limits = {"max_chars": MAX_CHARS, "max_texts": MAX_TEXTS, "max_beam_size": MAX_BEAM, "max_body_bytes": MAX_BODY}
    assert limits.items() <= info["limits"].items()
    assert server.get("/info").json()["models"] == [info]
    assert info["runtime"]["threads_per_worker"] == 1 and info["runtime"]["torch"]
    schema = server.get("/openapi.json").json()
    request_schema = schema["components"]["schemas"]["TranslationRequest"]
    assert {"text", "texts", "beam_size", "n_best", "max_length"} <= set(request_schema["properties"])
    assert "422" in schema["paths"]["/predict"]["post"]["responses"]
    assert server.get("/docs").status_code == 200


# ----- concurrency and batching ----------------------------------------------------------------------------------


def _burst(server: ServerProcess, bodies: list) -> list[requests.Response]:
    """Send all bodies at once from one thread each (a barrier lines them up)."""
    barrier = threading.Barrier(len(bodies))

    def send(body):
        barrier.wait()
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/json"}
            return requests.post(f"{server.url}/predict", data=body, headers=headers, timeout=60)
        return server.post(body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_32_concurrent_clients_get_their_own_answers(server, cli, sentences):
    n = len(sentences)
    short = {i: server.post({"text": sentences[i], "beam_size": 1, "max_length": 4}).json() for i in range(n)}
    bodies, expected = [], []
    for i in range(32):
        j, k = i % n, (i + 1) % n
        kind = i % 4
        if kind == 0:
            bodies.append({"text": sentences[j], "beam_size": 1})
            expected.append({"translation": cli["beam1"][j]})
        elif kind == 1:
            bodies.append({"text": sentences[j]})
            expected.append({"translation": cli["beam3"][j]})
        elif kind == 2:
            bodies.append({"texts": [sentences[j], sentences[k]], "beam_size": 3, "n_best": 3})
            nbest = [[t for t, _ in cli["nbest"][x]] for x in (j, k)]
            expected.append({"translations": [cli["beam3"][j], cli["beam3"][k]], "n_best": nbest})
        else:
            bodies.append({"text": sentences[j], "beam_size": 1, "max_length": 4})
            expected.append({"translation": short[j]["translation"]})
    batches_before = len(_batches(server))
    responses = _burst(server, bodies)
    assert [r.status_code for r in responses] == [200] * 32
    for response, want in zip(responses, expected, strict=True):
        body = response.json()
        for key, value in want.items():
            got = [[h["translation"] for h in hyps] for hyps in body[key]] if key == "n_best" else body[key]
            assert got == value
    new_batches = _batches(server)[batches_before:]
    assert sum(requests_ for requests_, _, _ in new_batches) == 32
    assert max(requests_ for requests_, _, _ in new_batches) > 1, "no two requests were batched together"
    assert any(groups > 1 for _, _, groups in new_batches), "no batch mixed decoding options"


def test_bad_request_in_a_burst_fails_alone(server, cli, sentences):
    bad = [
        {"text": "  "},
        {"text": sentences[0], "beam_size": 99},
        {"text": sentences[0], "texts": sentences[:2]},
        b'{"text": ',
    ]
    good = [{"texts": [sentences[i]], "beam_size": 3} for i in range(12)]
    responses = _burst(server, good[:6] + bad + good[6:])
    statuses = [r.status_code for r in responses]
    assert statuses[6:10] == [422, 422, 422, 400]
    for i, response in enumerate(responses[:6] + responses[10:]):
        assert response.status_code == 200
        assert response.json()["translations"] == [cli["beam3"][i]]


def _group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the live processes of a process group (from /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # fields[0] is the state (field 3 of stat)
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_idle_server_uses_almost_no_cpu(server):
    time.sleep(0.5)
    before = _group_cpu_seconds(server.pgid)
    time.sleep(3)
    used = _group_cpu_seconds(server.pgid) - before
    assert used < 0.1, f"{used:.2f} CPU seconds in 3 idle seconds"  # LitServe's stock batched loop: about 0.3


def test_server_log_has_requests_and_no_errors(server, sentences):
    start = len(server.log())
    assert server.post({"text": sentences[1]}).status_code == 200
    assert server.post({"texts": sentences[3:5]}).status_code == 200
    assert server.post({"text": ""}).status_code == 422
    expected = [
        r"POST /predict 200 sentences=1 \d+\.\d ms",
        r"POST /predict 200 sentences=2 \d+\.\d ms",
        r"POST /predict 422 sentences=- \d+\.\d ms",
    ]
    deadline = time.monotonic() + 10
    while not all(re.search(p, server.log()[start:]) for p in expected) and time.monotonic() < deadline:
        time.sleep(0.1)  # a request's line may reach the file just after its answer
    ours = server.log()[start:]  # only this test's requests
    for p in expected:
        assert re.search(p, ours), ours[-2000:]
    assert sentences[1] not in ours and sentences[3] not in ours  # texts are logged only with --log-text
    log = server.log()
    assert "Traceback" not in log and " 500 " not in log


# ----- API key -----------------------------------------------------------------------------------------------------


def test_api_key_required_everywhere(keyed_server, sentences):
    url, good = keyed_server.url, {"X-API-Key": "k3y-Test"}
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": "k3y-Test x"}, {"X-API-Key": "k3y-tes"}):
        for path in ("/health", "/info", "/metrics", "/"):  # "/" without Accept: text/html is the JSON index
            _assert_clean_error(requests.get(url + path, headers=headers, timeout=10), 401, "API key")
        response = requests.post(f"{url}/predict", json={"text": sentences[0]}, headers=headers, timeout=10)
        _assert_clean_error(response, 401, "X-API-Key")
    assert requests.get(f"{url}/health", headers=good, timeout=10).status_code == 200
    assert requests.get(f"{url}/info", headers=good, timeout=10).status_code == 200
    assert requests.get(f"{url}/openapi.json", timeout=10).status_code == 200  # the schema is public
    assert requests.get(f"{url}/docs", timeout=10).status_code == 200
    page = requests.get(f"{url}/", headers={"Accept": "text/html"}, timeout=10)  # a browser: the web page, which
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")  # asks for the key
    assert requests.get(f"{url}/static/app.js", timeout=10).status_code == 200


@pytest.mark.parametrize("value", [b"k3y-Test ", b" k3y-Test", b"\tk3y-Test \t", b"k3y-Test"])
def test_key_header_whitespace_is_not_part_of_the_key(keyed_server, value):
    """RFC 9110: whitespace around a header value is not part of it; sent as raw bytes, so the server (uvicorn's
    default parser here, h11 in test_serve_ops) decides, not a client library."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-API-Key: " + value + b"\r\nConnection: close\r\n\r\n"
    assert raw_bytes(keyed_server.port, request)[0] == 200
    wrong = request.replace(b"k3y-Test", b"k3y-Tes t")
    assert raw_bytes(keyed_server.port, wrong)[0] == 401


def test_request_without_key_never_reaches_the_model(keyed_server, sentences):
    before = len(_batches(keyed_server))
    url = f"{keyed_server.url}/predict"
    unauthorized = [
        requests.post(url, json={"text": sentences[0]}, timeout=10),
        requests.post(url, data=b'{"text": ', headers={"Content-Type": "application/json"}, timeout=10),
        requests.post(url, json={"text": "a" * 2 * MAX_BODY}, timeout=10),  # not even the size is looked at
        requests.post(url, json={"text": sentences[0]}, headers={"X-API-Key": "nope"}, timeout=10),
    ]
    assert [r.status_code for r in unauthorized] == [401] * 4
    assert keyed_server.post({"text": sentences[0]}).status_code == 200
    assert len(_batches(keyed_server)) - before == 1


def test_log_text_logs_the_texts(keyed_server, sentences):
    assert keyed_server.post({"text": sentences[2]}).status_code == 200
    line = keyed_server.log_line(lambda x: "POST /predict 200" in x and sentences[2] in x)
    assert "request=" in line and "response=" in line and '"translation"' in line


def test_docker_healthcheck_sends_the_key(keyed_server, server):
    """The Dockerfile's HEALTHCHECK command, run here against both servers."""
    line = next(x for x in (REPO / "Dockerfile").read_text().splitlines() if x.startswith("HEALTHCHECK"))
    command = json.loads(line.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]

    def check(port: int, key: str | None) -> int:
        env = {"PATH": "/usr/bin:/bin", "NMT_PORT": str(port), **({"NMT_API_KEY": key} if key else {})}
        return subprocess.run([sys.executable, "-c", command[2]], env=env, capture_output=True, timeout=20).returncode

    assert check(keyed_server.port, "k3y-Test") == 0
    assert check(keyed_server.port, None) != 0
    assert check(keyed_server.port, "wrong") != 0
    assert check(server.port, None) == 0


# ----- lifecycle -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_worker_restart_then_sigterm_leaves_nothing_behind(tiny_run, tmp_path, sentences):
    proc = _start(tiny_run, tmp_path / "server.log", "--threads", "1")
    try:
        worker = proc.worker_pids()[0]
        os.kill(worker, signal.SIGKILL)
        seen, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline and not (503 in seen and seen[-1] == 200):
            seen.append(proc.get("/health").status_code)
            time.sleep(0.1)
        assert 503 in seen and seen[-1] == 200, "the killed worker was not restarted (503 then 200)"
        assert proc.worker_pids()[0] != worker
        assert proc.post({"text": sentences[0]}).status_code == 200

        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0
        deadline = time.monotonic() + 5
        while group_alive(proc.pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(proc.pgid), "a server process outlived SIGTERM"
    finally:
        proc.kill()


def test_bad_model_directory_is_a_clean_error(tmp_path, tiny_run):
    result = run_nmt("serve", "--model", tmp_path / "missing", check=False)
    assert result.returncode == 2
    assert "model directory not found" in result.stderr and "Traceback" not in result.stderr
    result = run_nmt("serve", "--model", tmp_path, "--batch-timeout", "0", check=False)
    assert result.returncode == 2 and "--batch-timeout" in result.stderr
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "model.pt").write_bytes(b"not a weights file")
    result = run_nmt("serve", "--model", broken, "--port", str(free_port()), check=False, timeout=120)
    assert result.returncode == 2
    assert "cannot load the model" in result.stderr and "Traceback" not in result.stderr


def test_libretranslate_pair_not_served(server, cli, sentences):
    """The one-model server (de-en) as LibreTranslate: English is a language it knows (a target) but not a source."""
    url = f"{server.url}/translate"
    response = requests.post(url, json={"q": "A dog runs.", "source": "en", "target": "de"}, timeout=60)
    assert response.status_code == 400
    assert response.json() == {
        "error": "German (de) is not available as a target language from English (en): no model for it, nor through "
        "English; this server translates de-en"
    }
    body = {"q": sentences[0], "source": "de", "target": "en"}
    assert requests.post(url, json=body, timeout=60).json() == {"translatedText": cli["beam3"][0]}
    languages = requests.get(f"{server.url}/languages", timeout=10).json()
    assert languages == [
        {"code": "de", "name": "German", "targets": ["de", "en"]},
        {"code": "en", "name": "English", "targets": ["en"]},
    ]
