"""End to end: the real `nmt` command on a synthetic task and on the tiny Multi30k config."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import DATA_DIR, nmt_env, run_nmt
from synthetic import reversal_pairs, write_reversal_task

pytestmark = pytest.mark.slow  # every test trains a model with `nmt train` (synthetic task or tiny Multi30k config)


@pytest.fixture(scope="module")
def reversal_run(tmp_path_factory):
    data = write_reversal_task(tmp_path_factory.mktemp("reversal"))
    run_dir = data / "run"
    run_nmt(
        "train", "--config", data / "reversal.yaml", "--set", f"data.path={data}", "--output-dir", run_dir, "--quiet"
    )
    return data, run_dir


def test_reversal_task_reaches_near_perfect_bleu(reversal_run, tmp_path):
    data, run_dir = reversal_run
    report = tmp_path / "scores.json"
    proc = run_nmt(
        "evaluate", "--model", run_dir, "--src", data / "test.src", "--ref", data / "test.tgt", "--json", report
    )
    assert "BLEU" in proc.stdout and "chrF2" in proc.stdout
    scores = json.loads(report.read_text())
    for metric in ("bleu", "chrf", "ter"):  # each signature as sacreBLEU writes it, whatever the order of its fields
        assert f"signature: {scores[metric]['signature']}" in proc.stdout
    assert scores["bleu"]["score"] >= 90.0, scores["bleu"]
    assert len(scores["hypotheses"]) == 100 and len(scores["scores"]) == 100


def test_translate_stdin_to_stdout_keeps_line_counts(reversal_run):
    _, run_dir = reversal_run
    src, tgt = reversal_pairs(5, seed=9)
    lines = [src[0], "", src[1], "   ", src[2]]
    proc = run_nmt("translate", "--model", run_dir, "--beam-size", "3", input="\n".join(lines) + "\n")
    out = proc.stdout.split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[1] == "" and out[3] == ""
    correct = sum(o == t for o, t in zip([out[0], out[2], out[4]], tgt[:3], strict=True))
    assert correct >= 2


def test_translate_files_and_n_best(reversal_run, tmp_path):
    _, run_dir = reversal_run
    src, _ = reversal_pairs(7, seed=3)
    (tmp_path / "in.txt").write_text("\n".join(src) + "\n")
    run_nmt("translate", "--model", run_dir, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.txt")
    assert len((tmp_path / "out.txt").read_text().splitlines()) == 7
    proc = run_nmt("translate", "--model", run_dir, "--n-best", "2", "--beam-size", "3", input=src[0] + "\n")
    rows = [line.split(" ||| ") for line in proc.stdout.splitlines()]
    assert len(rows) == 2 and [r[0] for r in rows] == ["0", "0"]
    assert float(rows[0][2]) >= float(rows[1][2])


def test_length_penalty_option_reaches_the_search(reversal_run):
    """--length-penalty is passed to the search (the loaded config is not edited): alpha 2 divides the negative
    log-probability by ((5 + length) / 6) ** 2 > 1, so the score rises above alpha 0's."""
    _, run_dir = reversal_run
    src, _ = reversal_pairs(1, seed=5)

    def score(alpha: str) -> float:
        proc = run_nmt("translate", "--model", run_dir, "--n-best", "2", "--length-penalty", alpha, input=src[0] + "\n")
        return float(proc.stdout.splitlines()[0].split(" ||| ")[2])

    assert score("2") > score("0")


def test_greedy_and_beam_translation_are_deterministic(reversal_run):
    _, run_dir = reversal_run
    src, _ = reversal_pairs(20, seed=4)
    text = "\n".join(src) + "\n"
    for beam in ("1", "4"):
        first = run_nmt("translate", "--model", run_dir, "--beam-size", beam, "--batch-size", "3", input=text).stdout
        second = run_nmt("translate", "--model", run_dir, "--beam-size", beam, "--batch-size", "16", input=text).stdout
        assert first == second


def test_tiny_config_trains_with_falling_loss(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {
        "config.yaml",
        "spm.model",
        "model.pt",
        "last.pt",
        "metadata.json",
        "metrics.jsonl",
        "training_curve.png",
    } <= names
    metrics = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    valid = [m for m in metrics if m["type"] == "valid"]
    assert len(valid) >= 2 and valid[-1]["valid_loss"] < valid[0]["valid_loss"]
    train_losses = [m["train_loss"] for m in metrics if m["type"] == "train"]
    assert train_losses[-1] < train_losses[0]


def test_tiny_model_translates_and_evaluates_on_multi30k(tiny_run, tmp_path):
    report = tmp_path / "test.json"
    proc = run_nmt("evaluate", "--model", tiny_run, "--split", "test", "--beam-size", "2", "--json", report)
    assert "test_2016_flickr: 1000 sentences" in proc.stdout
    scores = json.loads(report.read_text())
    assert set(scores) >= {"bleu", "chrf", "ter", "hypotheses", "scores"}
    assert "tok:13a" in scores["bleu"]["signature"] and len(scores["hypotheses"]) == 1000
    source = (DATA_DIR / "test_2016_flickr.de").read_text().splitlines()[:4]
    out = run_nmt("translate", "--model", tiny_run, input="\n".join(source) + "\n").stdout.splitlines()
    assert len(out) == 4 and all(line.strip() for line in out)


def one_line_error(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_user_errors_are_one_line(tmp_path, reversal_run):
    data, run_dir = reversal_run
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden: 3\n")
    one_line_error(run_nmt("train", "--config", bad, check=False), "unknown key 'model.hidden'", "bad.yaml")
    one_line_error(run_nmt("train", "--config", tmp_path / "none.yaml", check=False), "config file not found")
    one_line_error(
        run_nmt(
            "train",
            "--config",
            data / "reversal.yaml",
            "--set",
            f"data.path={tmp_path}",
            "--output-dir",
            tmp_path / "r",
            check=False,
        ),
        "missing data file",
    )
    mismatch = tmp_path / "mm"
    mismatch.mkdir()
    (mismatch / "train.src").write_text("a\nb\n")
    (mismatch / "train.tgt").write_text("a\n")
    one_line_error(
        run_nmt(
            "train",
            "--config",
            data / "reversal.yaml",
            "--set",
            f"data.path={mismatch}",
            "--output-dir",
            tmp_path / "r2",
            check=False,
        ),
        "line-count mismatch",
    )
    one_line_error(run_nmt("translate", "--model", tmp_path / "nowhere", input="a\n", check=False), "not found")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "model.pt").write_bytes(b"garbage")
    one_line_error(run_nmt("translate", "--model", broken, input="a\n", check=False), "model.pt")
    (broken / "spm.model").unlink()
    one_line_error(run_nmt("translate", "--model", broken, input="a\n", check=False), "spm.model")
    one_line_error(
        run_nmt("evaluate", "--model", run_dir, "--src", data / "test.src", "--ref", data / "train.tgt", check=False),
        "line-count mismatch",
    )
    one_line_error(run_nmt("translate", "--model", run_dir, "--input", data / "nope.txt", check=False), "nope.txt")


def test_resume_from_cli_finishes_the_run(tmp_path, reversal_run):
    data, _ = reversal_run
    run_dir = tmp_path / "resumable"
    base = [
        "train",
        "--config",
        data / "reversal.yaml",
        "--set",
        f"data.path={data}",
        "--output-dir",
        run_dir,
        "--quiet",
    ]
    run_nmt(*base, "--set", "train.max_steps=5")
    proc = run_nmt(*base, "--set", "train.max_steps=5", check=False)
    one_line_error(proc, "already holds a training run")
    proc = run_nmt(*base, "--set", "train.max_steps=9", "--resume")
    assert "max_steps=9" in proc.stdout
    state = json.loads((run_dir / "metadata.json").read_text())
    assert state["steps"] == 9


def test_input_without_any_token_translates_to_an_empty_line(reversal_run):
    _, run_dir = reversal_run
    proc = run_nmt("translate", "--model", run_dir, "--threads", "1", input="a b\n\u200b\u200b\nc\n")
    assert proc.stdout.split("\n")[1] == ""
    assert len(proc.stdout.split("\n")) == 4


def test_translate_imports_neither_the_server_nor_the_benchmarks(tmp_path):
    """Start-up: `nmt translate` builds only its own options (serve and bench import much more)."""
    code = (
        "import sys; from nmt.cli import main; rc = main(['translate', '--model', sys.argv[1]]); "
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('serve', 'litserve', 'fastapi') "
        "or m.startswith('nmt.bench')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing")], capture_output=True, text=True, env=nmt_env()
    )
    assert proc.stdout.split(None, 1) == ["2", "[]\n"], proc.stdout + proc.stderr


def test_translate_ends_without_teardown_and_loses_nothing(reversal_run, tmp_path):
    """`translate` and `evaluate` end with `os._exit` once their output is flushed (Python's teardown with torch
    loaded is about 0.3 s of every run): every line still arrives, the exit status is kept, and a reader that
    leaves early is not an error."""
    _, run_dir = reversal_run
    src, _ = reversal_pairs(3000, seed=4)
    code = "import atexit, sys; atexit.register(print, 'teardown', file=sys.stderr); from nmt.cli import run; run()"

    def command(*args):
        return [sys.executable, "-c", code, "translate", *map(str, args)]

    proc = subprocess.run(
        command("--model", run_dir), input="\n".join(src) + "\n", capture_output=True, text=True, env=nmt_env()
    )
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3000, proc.stderr
    assert "teardown" not in proc.stderr
    proc = subprocess.run(command("--model", tmp_path / "missing"), capture_output=True, text=True, env=nmt_env())
    assert proc.returncode == 2 and proc.stderr.startswith("nmt: error: model directory not found")
    reader_leaves = subprocess.Popen(
        command("--model", run_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=nmt_env(),
    )
    reader_leaves.stdin.write(("\n".join(src) + "\n").encode())
    reader_leaves.stdin.close()
    assert reader_leaves.stdout.readline()
    reader_leaves.stdout.close()
    assert reader_leaves.wait(timeout=120) == 0
    assert reader_leaves.stderr.read() == b""
