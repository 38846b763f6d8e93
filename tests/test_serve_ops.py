"""Running the service for real users: Prometheus /metrics, per-key quotas (--keys) and the translation cache.

Every server here is the real `nmt serve` in a subprocess (tests/server_process.py) with the tiny model; metrics are
read back with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import run_nmt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from server_process import ServerProcess, raw_bytes, raw_request

from serve.cache import TranslationCache, translate_with_cache
from serve.keys import KeysFileError, parse_keys

# the tests that start `nmt serve` are slow; the keys file's and the cache's own tests are unit tests
slow = pytest.mark.slow

A, B, C, D = "Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Ein Kind lacht.", "Eine Frau mit Hut."
FAST = ["--threads", "1", "--batch-timeout", "0.002"]


def scrape(server: ServerProcess, **headers: str) -> dict[tuple, float]:
    """/metrics as {(sample name, ((label, value), ...)): value}, parsed by prometheus_client."""
    response = requests.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _start(model: Path, log: Path, *options: str, **kwargs) -> ServerProcess:
    return ServerProcess.ready(model, log, *FAST, *options, **kwargs)


# ----- metrics -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@slow
def test_metrics_count_a_known_workload_exactly(tiny_run, tmp_path):
    """2 workers and 2 HTTP processes: every count adds up over all of them; a killed worker's counts stay, and
    only live workers count as alive."""
    server = _start(tiny_run, tmp_path / "server.log", "--workers", "2")
    try:
        singles = [A, B, C, D, "Ein Hund."]
        for text in singles:
            assert server.post({"text": text, "beam_size": 2}).status_code == 200
        for _ in range(3):
            assert server.post({"texts": [A, B, C], "beam_size": 2}).status_code == 200
        for bad in ({"text": ""}, {"texts": []}):
            assert server.post(bad).status_code == 422
        assert requests.get(f"{server.url}/nowhere/{'x' * 50}", timeout=10).status_code == 404

        before = scrape(server)
        samples = scrape(server)
        sentences = len(singles) + 3 * 3
        characters = sum(map(len, singles)) + 3 * len(A + B + C)
        assert value(samples, "nmt_http_requests_total", route="/predict", method="POST", status="200") == 8
        assert value(samples, "nmt_http_requests_total", route="/predict", method="POST", status="422") == 2
        assert value(samples, "nmt_http_requests_total", route="other", method="GET", status="404") == 1
        assert value(samples, "nmt_http_requests_total", route="/metrics", method="GET", status="200") == 1
        assert value(before, "nmt_http_requests_total", route="/metrics", method="GET", status="200") == 0
        assert value(samples, "nmt_http_request_duration_seconds_count", route="/predict") == 10
        assert value(samples, "nmt_queue_wait_seconds_count") == 8
        assert value(samples, "nmt_batch_requests_sum") == 8
        assert value(samples, "nmt_batch_sentences_sum") == sentences
        assert value(samples, "nmt_sentences_total", pair="de-en") == sentences
        assert value(samples, "nmt_characters_total", pair="de-en") == characters
        hits, misses = value(samples, "nmt_cache_hits_total"), value(samples, "nmt_cache_misses_total")
        assert hits + misses == sentences and hits >= 3  # [A, B, C] three times over two workers: >= one full hit
        assert value(samples, "nmt_cache_hit_ratio") == pytest.approx(hits / sentences)
        assert value(samples, "nmt_workers_alive") == 2
        assert value(samples, "nmt_model_load_seconds", pair="de-en") > 0
        assert value(samples, "nmt_batch_requests_bucket", le="+Inf") == value(samples, "nmt_batch_requests_count")

        workers = server.worker_pids()
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = server.worker_pids()
            if len(now) == 2 and workers[0] not in now:  # restarted (setup runs before /health is 200 again)
                break
            time.sleep(0.2)
        server.wait_ready()
        after = scrape(server)
        assert value(after, "nmt_workers_alive") == 2  # not 3: the dead worker's gauge is dropped
        assert value(after, "nmt_sentences_total", pair="de-en") == sentences  # its counts are kept
        assert value(after, "nmt_http_requests_total", route="/predict", method="POST", status="200") == 8
    finally:
        server.stop()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@slow
def test_metrics_directory_is_removed_at_exit(tiny_run, tmp_path):
    """PROMETHEUS_MULTIPROC_DIR is a fresh temporary directory of the server's, gone after SIGINT."""
    server = _start(tiny_run, tmp_path / "server.log")
    try:
        worker = server.worker_pids()[0]  # started after the variable was set (the main's /proc is older)
        environ = (Path("/proc") / str(worker) / "environ").read_bytes().split(b"\0")
        directory = next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
        assert Path(directory).is_dir() and any(Path(directory).glob("*.db"))
    finally:
        assert server.stop() == 0
    assert not Path(directory).exists()


# ----- keys and quotas -----------------------------------------------------------------------------------------

KEYS = {"minute-A": 4, "minute-B": 4}  # requests per minute
CHARS_KEY, FREE_KEY, NEW_KEY = "chars-C", "free-D", "new-E"
WINDOW = 4  # seconds of the "minute" window in these tests
KEYS_FILE = f"""# test keys
minute-A requests_per_minute=4
minute-B   requests_per_minute=4    # the same limit, counted apart
{CHARS_KEY} characters_per_day=40
{FREE_KEY}
"""


@pytest.fixture(scope="module")
def keyed(tiny_run, tmp_path_factory):
    """2 workers, 2 HTTP processes, the keys above, a 4-second minute window, /metrics open, uvicorn's h11 parser
    (test_serve's servers take the default parser: the key check must not depend on it)."""
    directory = tmp_path_factory.mktemp("keys")
    (directory / "keys.txt").write_text(KEYS_FILE, encoding="utf-8")
    options = ["--workers", "2", "--keys", str(directory / "keys.txt"), "--quota-windows", f"{WINDOW},60"]
    options += ["--http", "h11"]
    server = ServerProcess(tiny_run, directory / "server.log", *FAST, *options, "--metrics-open")
    server.headers = {"X-API-Key": FREE_KEY}
    try:
        server.wait_ready()
        server.keys_file = directory / "keys.txt"
        yield server
    finally:
        server.stop()


def _post(server: ServerProcess, key: str | None, body: dict | None = None, path: str = "/predict"):
    """A POST on a fresh connection (so that both HTTP processes get requests)."""
    headers = {"X-API-Key": key} if key is not None else {}
    return requests.post(
        f"{server.url}{path}", json=body or {"text": "Hallo.", "beam_size": 1}, headers=headers, timeout=30
    )


def _answering_pids(server: ServerProcess, since: int, count: int) -> set[str]:
    """Pids of the HTTP processes that logged the first `count` POST /predict answers after character `since` of
    the log (the requests are sent one after another, so the log keeps their order)."""
    deadline = time.monotonic() + 10
    while True:
        pids = re.findall(r"INFO (\d+) nmt\.serve: POST /predict (?:200|429)", server.log()[since:])
        if len(pids) >= count or time.monotonic() > deadline:
            return set(pids[:count])
        time.sleep(0.05)


@slow
def test_over_the_per_minute_limit_is_429_then_recovers(keyed):
    """The 5th-8th requests of a window are 429, a new window admits again, and the count is one for both HTTP
    processes. Which process accepts a connection is the kernel's choice: a burst that one process answered alone
    proves nothing about sharing, so the burst is repeated in a fresh window until both processes answered one."""
    bursts = 6
    for _ in range(bursts):
        since = len(keyed.log())
        start = time.monotonic()
        first = [_post(keyed, "minute-A") for _ in range(8)]
        assert time.monotonic() - start < WINDOW, "too slow to test a 4 s window on this machine"
        assert [r.status_code for r in first] == [200] * 4 + [429] * 4
        refused = first[-1]
        assert "requests per minute" in refused.json()["detail"]
        retry = int(refused.headers["Retry-After"])
        assert 1 <= retry <= WINDOW
        assert _post(keyed, "minute-B").status_code == 200  # another key has its own count
        time.sleep(retry + 0.2)
        assert _post(keyed, "minute-A").status_code == 200  # a new window
        if len(_answering_pids(keyed, since, count=8)) == 2:
            return
        time.sleep(WINDOW)  # the next burst starts in a fresh window
    pytest.fail(f"one HTTP process answered each of {bursts} bursts: sharing between processes is untested")


@slow
def test_two_keys_do_not_share_limits(keyed):
    time.sleep(WINDOW)  # fresh windows
    assert [_post(keyed, "minute-B").status_code for _ in range(5)] == [200] * 4 + [429]
    assert [_post(keyed, "minute-A").status_code for _ in range(4)] == [200] * 4


@slow
def test_characters_per_day(keyed):
    text = "x" * 25
    assert _post(keyed, CHARS_KEY, {"text": text, "beam_size": 1, "max_length": 3}).status_code == 200
    over = _post(keyed, CHARS_KEY, {"text": text, "beam_size": 1, "max_length": 3})
    assert over.status_code == 429 and "characters per day" in over.json()["detail"]
    assert 50 <= int(over.headers["Retry-After"]) <= 60
    huge = _post(keyed, CHARS_KEY, {"texts": ["y" * 30, "y" * 11], "beam_size": 1})  # 41 > 40: never possible
    assert huge.status_code == 413 and "over this key's 40 characters per day" in huge.json()["detail"]
    assert _post(keyed, CHARS_KEY, {"text": "z" * 15, "beam_size": 1, "max_length": 3}).status_code == 200  # 40


def _raw(method: str, path: str, key: bytes, body: bytes | None) -> bytes:
    """A request as raw bytes, the X-API-Key header's value exactly `key`."""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
    body = body or b""
    return head.encode() + b"X-API-Key: " + key + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@slow
def test_missing_or_unknown_key(keyed):
    for path in ("/predict", "/health", "/info"):
        method = "POST" if path == "/predict" else "GET"
        body = b'{"text": "Hallo."}' if method == "POST" else None
        status, _, data = raw_request(keyed.port, method, path, body, {"Content-Type": "application/json"})
        assert status == 401 and "API key is required" in json.loads(data)["detail"]
        status, _, data = raw_request(keyed.port, method, path, body, {"X-API-Key": "minute-A x"})
        assert status == 403 and json.loads(data) == {"detail": "unknown API key"}
        for value in (b" ", b"\t \t"):  # only whitespace: no key
            assert raw_bytes(keyed.port, _raw(method, path, value, body))[0] == 401
        for value in (FREE_KEY.encode() + b" ", b"\t" + FREE_KEY.encode() + b" \t"):  # RFC 9110: not part of it
            assert raw_bytes(keyed.port, _raw(method, path, value, body))[0] == 200
    assert keyed.get("/health").status_code == 200
    page = requests.get(f"{keyed.url}/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "<title>" in page.text  # the page asks for the key itself
    assert requests.get(f"{keyed.url}/", timeout=10).status_code == 401  # the JSON index needs one
    assert requests.get(f"{keyed.url}/metrics", timeout=10).status_code == 200  # --metrics-open


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    key=st.none() | st.sampled_from(["minute-A", FREE_KEY, "free-d", FREE_KEY + "x"]) | st.text(max_size=12),
    path=st.sampled_from(["/predict", "/health", "/info", "/metrics", "/", "/static/app.js", "/static/../x", "/x"]),
    method=st.sampled_from(["GET", "POST", "HEAD", "DELETE"]),
)
@slow
def test_fuzz_keys_server(keyed, key, path, method):
    """Any key header on any route: never 5xx; an error is JSON with a short message."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        try:
            key.encode("latin-1")
        except UnicodeEncodeError:
            return
        if key != key.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
            return  # not a header value http.client sends
        headers["X-API-Key"] = key
    body = b'{"text": "Hallo.", "beam_size": 1}' if method == "POST" else None
    status, answer_headers, data = raw_request(keyed.port, method, path, body, headers)
    assert status < 500, (status, data)
    if status >= 400 and method != "HEAD":
        detail = json.loads(data)["detail"]
        assert isinstance(detail, str) and len(detail) <= 400
    if status == 429:
        assert int(answer_headers["retry-after"]) >= 1


@slow
def test_sighup_reloads_keys_without_dropping_requests(keyed):
    """A key added and one removed by SIGHUP, while a client keeps translating; a broken file on the next SIGHUP is
    logged and the keys stay as they were. The server's keys file is restored (and reloaded) at the end."""
    results: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.post(
                    f"{keyed.url}/predict", json={"text": "Hallo.", "beam_size": 1}, headers={"X-API-Key": FREE_KEY}
                )
                results.append(r.status_code)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        assert _post(keyed, NEW_KEY).status_code == 403
        keyed.keys_file.write_text(KEYS_FILE.replace("minute-B", "# minute-B") + f"{NEW_KEY}\n", encoding="utf-8")
        keyed.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while _post(keyed, NEW_KEY).status_code != 200:
            assert time.monotonic() < deadline, "the new key was not loaded"
            time.sleep(0.1)
        assert _post(keyed, "minute-B").status_code == 403
        keyed.keys_file.write_text(f"{NEW_KEY}\nbroken requests_per_minute=0\n", encoding="utf-8")
        keyed.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert "keys not reloaded, the previous keys stay in force" in keyed.log()
        assert "line 2: requests_per_minute: expected a positive integer" in keyed.log()
        assert _post(keyed, FREE_KEY).status_code == 200
    finally:
        stop.set()
        thread.join(30)
        keyed.keys_file.write_text(KEYS_FILE, encoding="utf-8")
        keyed.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10  # GET requests count against no limit
        while keyed.get("/health", headers={"X-API-Key": "minute-B"}).status_code != 200:
            assert time.monotonic() < deadline, "the keys file was not restored"
            time.sleep(0.1)
    assert results and set(results) == {200}, results
    assert keyed.proc.poll() is None


@slow
def test_keys_never_in_logs_or_metrics(keyed):
    text = requests.get(f"{keyed.url}/metrics", timeout=10).text + keyed.log()
    for key in [*KEYS, CHARS_KEY, FREE_KEY, NEW_KEY]:
        assert key not in text


@pytest.mark.parametrize(
    "content, message",
    [
        ("good\nbad requests_per_hour=5\n", "line 2: unknown option 'requests_per_hour=5'"),
        ("a1 requests_per_minute=-3\n", "line 1: requests_per_minute: expected a positive integer, got '-3'"),
        ("a1 requests_per_minute=1 requests_per_minute=2\n", "line 1: requests_per_minute given twice"),
        ("# only a comment\n\n", "no keys"),
        ("k1\n\nk1 characters_per_day=5\n", "line 3: the same key as on line 1"),
        ("k\u00e9y\n", "line 1: the API key must be non-empty printable ASCII"),
    ],
)
def test_bad_keys_file_names_the_line(content, message):
    with pytest.raises(KeysFileError, match=re.escape(message)):
        parse_keys(content, "keys.txt")


def test_keys_file_format():
    keys = parse_keys("# c\n  a-1 requests_per_minute=5 # x\nb#2 characters_per_day=9\nc3\n", "f")
    assert [(k.key, k.requests_per_minute, k.characters_per_day) for k in keys] == [
        ("a-1", 5, None),
        ("b#2", None, 9),
        ("c3", None, None),
    ]


@slow
def test_bad_keys_file_stops_nmt_serve_with_the_line(tiny_run, tmp_path):
    (tmp_path / "keys").write_text("good\nbad x=1\n", encoding="utf-8")
    proc = run_nmt("serve", "--model", tiny_run, "--keys", tmp_path / "keys", check=False, timeout=120)
    assert proc.returncode == 2
    assert f"{tmp_path / 'keys'}, line 2: unknown option 'x=1'" in proc.stderr
    proc = run_nmt("serve", "--model", tiny_run, "--keys", tmp_path / "missing", check=False, timeout=120)
    assert proc.returncode == 2 and "cannot read the keys file" in proc.stderr
    proc = run_nmt("serve", "--model", tiny_run, "--keys", tmp_path / "keys", check=False, NMT_API_KEY="k")
    assert proc.returncode == 2 and "--keys and an API key" in proc.stderr


# ----- the translation cache -----------------------------------------------------------------------------------


class _Hyp:
    def __init__(self, text: str):
        self.text, self.score = text, -1.0


def test_cache_translates_only_distinct_misses():
    calls: list[list[str]] = []

    def translate(texts, beam_size, n_best, max_length):
        calls.append(list(texts))
        return [[_Hyp(t.upper())] for t in texts]

    cache = TranslationCache(100, 1 << 20)
    first, hits = translate_with_cache(cache, "m", translate, ["a", "b", "a"], 5, 1, None)
    assert [r[0].text for r in first] == ["A", "B", "A"] and hits == 0 and calls == [["a", "b"]]
    second, hits = translate_with_cache(cache, "m", translate, ["c", "a", "b"], 5, 1, None)
    assert [r[0].text for r in second] == ["C", "A", "B"] and hits == 2 and calls[-1] == ["c"]
    for options in ((4, 1, None), (5, 2, None), (5, 1, 7)):  # every decoding option is part of the key
        translate_with_cache(cache, "m", translate, ["a"], *options)
        assert calls[-1] == ["a"]
    translate_with_cache(cache, "other-model", translate, ["a"], 5, 1, None)
    assert calls[-1] == ["a"]
    assert translate_with_cache(None, "m", translate, ["a"], 5, 1, None)[1] == 0 and calls[-1] == ["a"]


def test_cache_is_bounded_in_entries_and_bytes():
    cache = TranslationCache(3, 1 << 20)
    for i in range(5):
        cache.put(("m", f"s{i}", 5, 1, None), [_Hyp("t")])
    assert len(cache) == 3 and cache.get(("m", "s0", 5, 1, None)) is None and cache.get(("m", "s4", 5, 1, None))
    cache.get(("m", "s2", 5, 1, None))  # used: s3 is now the least recently used
    cache.put(("m", "s5", 5, 1, None), [_Hyp("t")])
    assert cache.get(("m", "s2", 5, 1, None)) and cache.get(("m", "s3", 5, 1, None)) is None
    small = TranslationCache(1000, 4000)
    for i in range(100):
        small.put(("m", "x" * 200 + str(i), 5, 1, None), [_Hyp("y" * 200)])
    assert 0 < small.bytes <= 4000 and len(small) < 10
    small.put(("m", "z" * 10000, 5, 1, None), [_Hyp("z")])  # larger than the whole cache: not kept
    assert small.get(("m", "z" * 10000, 5, 1, None)) is None and small.bytes <= 4000


@slow
def test_cache_gives_the_same_answers_and_counts_hits(tiny_run, tmp_path):
    """The same request sequence to a server with the cache and one with --cache-size 0 (1 worker, 1 thread each,
    one request at a time): every answer byte-identical, though the cached server searches other batches (only
    the misses of a request); hits and misses exact."""
    sequence = [
        {"texts": [A, B]},
        {"texts": [A, B]},  # 2 hits
        {"texts": [C, A, D]},  # 1 hit inside a larger request, 2 misses
        {"text": A},  # 1 hit
        {"texts": [A, B], "n_best": 2},  # other options: 2 misses
        {"texts": [A, B], "beam_size": 2},  # 2 misses
    ]
    answers = {}
    for name, options in (("cache", []), ("none", ["--cache-size", "0"])):
        server = _start(tiny_run, tmp_path / f"{name}.log", *options)
        try:
            answers[name] = [server.post(body).content for body in sequence]
            answers[name + "-again"] = [server.post(body).content for body in sequence]
            answers[name + "-metrics"] = scrape(server)
        finally:
            server.stop()
    cached, plain = answers["cache"], answers["none"]
    assert cached == plain and answers["cache-again"] == answers["none-again"] == plain  # byte for byte
    assert cached[0] == cached[1]
    metrics = answers["cache-metrics"]
    assert value(metrics, "nmt_cache_hits_total") == 2 + 1 + 1 + 12  # the whole second round (12 sentences) hits
    assert value(metrics, "nmt_cache_misses_total") == 2 + 2 + 2 + 2
    assert value(answers["none-metrics"], "nmt_cache_hits_total") == 0
    assert value(answers["none-metrics"], "nmt_cache_misses_total") == 0
