"""`nmt bench train`, `translate` and `scaling` run as a user would and report their figures."""

import json

import pytest
from conftest import DATA_DIR, run_nmt
from synthetic import write_reversal_task

from nmt.precision import resolve_search_dtype

pytestmark = pytest.mark.slow  # every test trains a model or runs one through `nmt bench`


def test_bench_train_reports_throughput_and_flops(tmp_path):
    data = write_reversal_task(tmp_path / "data", train=400)
    report = tmp_path / "train.json"
    proc = run_nmt(
        "bench",
        "train",
        "--config",
        data / "reversal.yaml",
        "--set",
        f"data.path={data}",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--set",
        "train.precision=bf16",
        "--json",
        report,
    )
    for line in (
        "target tokens/s:",
        "source+target tokens/s:",
        "achieved matmul:",
        "precision: precision bf16 on cpu",
        "measured bf16 matmul peak:",
        "fraction of peak:",
        "machine:",
    ):
        assert line in proc.stdout
    r = json.loads(report.read_text())
    assert (
        r["steps"] == 3 and r["target_tokens_per_s"] > 0 and r["source_target_tokens_per_s"] > r["target_tokens_per_s"]
    )
    assert 0 < r["fraction_of_peak"] < 2 and r["peak_gflops"] > 0
    assert r["precision"] == "bf16" and set(r["peaks_gflops"]) == {"bf16"}  # against the peak of what ran
    assert {"cpu", "cores", "torch", "torch_threads"} <= set(r["machine"])


def test_bench_translate_default_test_set_with_bleu(tiny_run, tmp_path):
    report = tmp_path / "translate.json"
    proc = run_nmt("bench", "translate", "--model", tiny_run, "--beam-size", "2", "--json", report)
    assert "whole process:" in proc.stdout and "BLEU:" in proc.stdout
    r = json.loads(report.read_text())
    assert r["sentences"] == 1000 and r["input"].endswith("test_2016_flickr.de")
    assert r["whole_process_seconds"] > r["translate_seconds"] > 0 and r["peak_memory_mib"] > 0
    default = resolve_search_dtype("auto", "cpu")  # the shipped decode.dtype: int8, bf16 or fp32 by the CPU
    assert r["dtype"] == default and r["peak_gflops"] == max(r["peaks_gflops"].values())
    # The BLEU is the one `nmt evaluate` gives for the same model, split and beam: the same hypotheses scored
    # against the test set's references (a wrong reference file, order or tokenization would change it).
    evaluated = tmp_path / "evaluate.json"
    run_nmt("evaluate", "--model", tiny_run, "--split", "test", "--beam-size", "2", "--json", evaluated)
    expected = json.loads(evaluated.read_text())["bleu"]
    assert expected["score"] > 0 and (r["bleu"], r["bleu_signature"]) == (expected["score"], expected["signature"])


def test_bench_translate_int8_and_own_files(tiny_run, tmp_path):
    lines = (DATA_DIR / "val.de").read_text().splitlines()[:40]
    refs = (DATA_DIR / "val.en").read_text().splitlines()[:40]
    (tmp_path / "s.de").write_text("\n".join(lines) + "\n")
    (tmp_path / "r.en").write_text("\n".join(refs) + "\n")
    report = tmp_path / "int8.json"
    run_nmt(
        "bench",
        "translate",
        "--model",
        tiny_run,
        "--input",
        tmp_path / "s.de",
        "--ref",
        tmp_path / "r.en",
        "--dtype",
        "int8",
        "--json",
        report,
    )
    r = json.loads(report.read_text())
    assert r["dtype"] == "int8" and r["sentences"] == 40 and "bleu" in r
    assert set(r["peaks_gflops"]) == {"int8"} and r["achieved_gflops"] > 0 and r["fraction_of_peak"] > 0
    evaluated = tmp_path / "evaluate.json"
    files = ["--src", tmp_path / "s.de", "--ref", tmp_path / "r.en"]
    run_nmt("evaluate", "--model", tiny_run, *files, "--dtype", "int8", "--json", evaluated)
    assert r["bleu"] == json.loads(evaluated.read_text())["bleu"]["score"]


def test_bench_scaling_table_and_plot(tiny_run, tmp_path):
    report, plot = tmp_path / "scaling.json", tmp_path / "scaling.png"
    run_nmt(
        "bench",
        "scaling",
        "--model",
        tiny_run,
        "--sentences",
        "16",
        "--batch-sizes",
        "1,16",
        "--beam-sizes",
        "1,4",
        "--json",
        report,
        "--plot",
        plot,
    )
    r = json.loads(report.read_text())
    assert [x["batch_size"] for x in r["by_batch_size"]] == [1, 16]
    assert [x["beam_size"] for x in r["memory_by_beam_size"]] == [1, 4]
    assert r["by_source_length"] and plot.read_bytes().startswith(b"\x89PNG")


def test_bench_quality_trains_then_scores_validation_and_test(tmp_path):
    data = write_reversal_task(tmp_path / "data")
    report, run_dir = tmp_path / "quality.json", tmp_path / "run"
    overrides = [f"data.path={data}", "data.test_split=test"]
    args = ["--config", data / "reversal.yaml", "--output-dir", run_dir, "--quiet", "--json", report]
    proc = run_nmt("bench", "quality", *args, *[a for o in overrides for a in ("--set", o)])
    assert "test beam 2: BLEU" in proc.stdout and "val beam 1: BLEU" in proc.stdout
    r = json.loads(report.read_text())
    assert [(s["split"], s["beam_size"]) for s in r["scores"]] == [("val", 2), ("val", 1), ("test", 2), ("test", 1)]
    test_beam = r["scores"][2]
    assert test_beam["bleu"] >= 85 and test_beam["chrf"] > 0 and "13a" in test_beam["bleu_signature"]
    assert r["epochs"] == 8 and r["parameters"] > 0 and r["training_minutes"] >= 0 and r["length_penalty"] == 0.6
    assert len(r["curve"]) == 8 and r["curve"][-1]["valid_bleu"] > r["curve"][0]["valid_bleu"]

    # Scoring again without training gives the same figures (the model in the run directory is the one scored).
    again = tmp_path / "again.json"
    run_nmt(
        "bench",
        "quality",
        "--config",
        data / "reversal.yaml",
        "--output-dir",
        run_dir,
        "--skip-train",
        "--length-penalty",
        "0.6",
        "--json",
        again,
        "--plot",
        tmp_path / "curve.png",
    )
    again_report = json.loads(again.read_text())
    assert again_report["scores"][2]["bleu"] == test_beam["bleu"] and again_report["length_penalty"] == 0.6
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
