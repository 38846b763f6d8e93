"""`nmt bench serve`: the load client, against a real `nmt serve` (with an API key) and on its own."""

from __future__ import annotations

import json

import pytest
from conftest import run_nmt
from server_process import ServerProcess, free_port

from nmt.bench.common import machine_info, percentile
from nmt.bench.serve import request_body

KEY = "bench-key"


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    proc = ServerProcess(tiny_run, tmp_path_factory.mktemp("bench") / "server.log", "--threads", "1", api_key=KEY)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_percentile():
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0], 0) == 1.0 and percentile([1.0, 2.0], 100) == 2.0


def test_payload_shapes():
    sentences = ["a", "b", "c"]
    assert request_body(sentences, 0, 1, None) == {"text": "a"}
    assert request_body(sentences, 4, 1, 2) == {"text": "b", "beam_size": 2}
    assert request_body(sentences, 1, 2, None) == {"texts": ["c", "a"]}


def test_machine_info():
    info = machine_info()
    assert info["cores"] >= 1 and info["torch_threads"] >= 1 and info["torch"] and info["cpu"]
    assert machine_info(threads=3)["torch_threads"] == 3


def test_bench_serve_reports_throughput_and_latency(server, tmp_path):
    out = tmp_path / "bench.json"
    result = run_nmt(
        "bench", "serve", "--url", server.url, "--concurrency", "4", "--requests", "40",
        "--texts-per-request", "2", "--beam-size", "2", "--api-key", KEY, "--json", out,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert (report["requests"], report["sentences"], report["errors"]) == (40, 80, 0)
    assert report["requests_per_s"] > 0 and report["sentences_per_s"] == pytest.approx(
        2 * report["requests_per_s"], abs=0.02
    )
    ms = report["latency_ms"]
    assert 0 < ms["p50"] <= ms["p95"] <= ms["p99"] <= ms["max"]
    assert report["beam_size"] == 2 and report["concurrency"] == 4
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    assert report["server"]["threads_per_worker"] == 1
    for word in ("requests/s", "sentences/s", "p50", "p95", "p99", "errors", "cores", "torch"):
        assert word in result.stdout


def test_bench_serve_duration_and_input_file(server, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Ein Hund läuft.\n\nZwei Männer.\n", encoding="utf-8")
    result = run_nmt(
        "bench", "serve", "--url", server.url + "/", "--concurrency", "2", "--duration", "1", "--input", source,
        NMT_API_KEY=KEY,
    )  # fmt: skip
    assert " 0 errors" in result.stdout


def test_bench_serve_counts_errors(server):
    result = run_nmt(
        "bench", "serve", "--url", server.url, "--requests", "3", "--beam-size", "99", "--api-key", KEY, check=False
    )
    assert result.returncode == 2
    assert "3 errors" in result.stdout and "HTTP 422" in result.stdout
    assert "no request succeeded" in result.stderr


def test_bench_serve_needs_the_key(server):
    result = run_nmt("bench", "serve", "--url", server.url, "--requests", "1", check=False)
    assert result.returncode == 2 and "API key" in result.stderr


def test_bench_serve_without_server_is_a_clean_error():
    result = run_nmt("bench", "serve", "--url", f"http://127.0.0.1:{free_port()}", "--requests", "1", check=False)
    assert result.returncode == 2 and "cannot reach the server" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bench_data_reports_the_pipeline_and_reuses_the_caches(tmp_path):
    from tests.synthetic import write_reversal_task

    data = write_reversal_task(tmp_path / "data", train=300)
    out = tmp_path / "data.json"
    run_nmt(
        "bench", "data", "--config", data / "reversal.yaml", "--set", f"data.path={data}",
        "--pairs", "1000", "--epochs", "2", "--threads", "1", "--work-dir", tmp_path / "work", "--json", out,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["pairs"] == 1000 and report["pairs_within_length_limits"] == 1000
    first, second, resume = (report["phases"][k] for k in ("first_start", "second_run", "resume"))
    assert first["tokenize"]["seconds"] > 0 and first["sentencepiece"]["seconds"] > 0
    assert first["batches"]["per_epoch"] > 1 and first["batches"]["seconds"] >= 0
    assert second["sentencepiece"]["seconds"] == 0 and second["tokenize"]["seconds"] < first["tokenize"]["seconds"]
    assert resume["tokenize"]["seconds"] < first["tokenize"]["seconds"]
    for phase in (first, second, resume):
        assert phase["seconds_to_first_step"] > 0 and phase["peak_rss_mib"] >= phase["read_text"]["peak_rss_mib"] > 0
    assert len((tmp_path / "work" / "data" / "train.src").read_text().splitlines()) == 1000
