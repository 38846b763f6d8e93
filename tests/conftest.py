"""Shared fixtures: the local Multi30k copy and a tiny model trained once per test session with the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nmt.runtime import mkl_defaults

mkl_defaults()  # as the `nmt` command does, before MKL's first product: fp32 rows independent of their batch

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("NMT_DATA_DIR", REPO.parent / "shared" / "data" / "multi30k")).resolve()


def nmt_env(**extra: str) -> dict[str, str]:
    """Environment for running the `nmt` CLI in a subprocess: local data, offline hub, no network."""
    env = dict(os.environ)
    env.update(NMT_DATA_DIR=str(DATA_DIR), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_nmt(*args: str, input: str | None = None, check: bool = True, timeout: float = 300, **env: str):
    """Run `python -m nmt ARGS` and return the CompletedProcess (text mode)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nmt", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        env=nmt_env(**env),
        cwd=REPO,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nmt {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


TRAIN_TIMEOUT = 900  # seconds for a tiny model's training: under a minute alone, far longer on a loaded machine


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "train.de").is_file():
        pytest.skip(f"Multi30k not found at {DATA_DIR} (set NMT_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir) -> Path:
    """configs/tiny.yaml trained once with `nmt train` on the local Multi30k copy."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    run_nmt("train", "--config", "configs/tiny.yaml", "--output-dir", run_dir, "--quiet", timeout=TRAIN_TIMEOUT)
    return run_dir


def _tiny_one_epoch(tmp_path_factory, source: str, target: str) -> Path:
    """configs/tiny.yaml for another pair of Multi30k, one epoch (seconds)."""
    run_dir = tmp_path_factory.mktemp(f"tiny-{source}-{target}") / "run"
    overrides = [
        f"data.src_lang={source}",
        f"data.tgt_lang={target}",
        "train.max_epochs=1",
        f"name=tiny_{source}_{target}",
    ]
    run_nmt(
        "train",
        "--config",
        "configs/tiny.yaml",
        "--output-dir",
        run_dir,
        "--quiet",
        *sum((["--set", o] for o in overrides), []),
        timeout=TRAIN_TIMEOUT,
    )
    return run_dir


@pytest.fixture(scope="session")
def tiny_run_en_de(tmp_path_factory, data_dir) -> Path:
    """A second tiny model for the reverse pair (en-de): a server with two language pairs."""
    return _tiny_one_epoch(tmp_path_factory, "en", "de")


@pytest.fixture(scope="session")
def tiny_run_en_fr(tmp_path_factory, data_dir) -> Path:
    """A tiny en-fr model: with de-en, German to French through English."""
    return _tiny_one_epoch(tmp_path_factory, "en", "fr")


# ----- `nmt serve` with both tiny models (de-en, en-de): test_libretranslate and test_openapi ---------------------

LT_KEY = "lt-K3y"
LT_MAX_CHARS, LT_MAX_TEXTS, LT_MAX_BEAM = 2000, 8, 4
LT_OPTIONS = ["--threads", "1", "--batch-timeout", "0.05", "--log-level", "debug", "--max-chars", str(LT_MAX_CHARS),
              "--max-texts", str(LT_MAX_TEXTS), "--max-beam-size", str(LT_MAX_BEAM)]  # fmt: skip


def _start_server(models, log_path, *options, **kwargs):
    from server_process import ServerProcess  # it imports this module

    return ServerProcess.ready(models, log_path, *options, **kwargs)


@pytest.fixture(scope="session")
def lt_server(tiny_run, tiny_run_en_de, tmp_path_factory):
    proc = _start_server([tiny_run, tiny_run_en_de], tmp_path_factory.mktemp("lt") / "server.log", *LT_OPTIONS)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def lt_keyed_server(tiny_run, tiny_run_en_de, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")  # both models offered as one directory of run directories
    for name, run in (("de_en", tiny_run), ("en_de", tiny_run_en_de)):
        (runs / name).symlink_to(run, target_is_directory=True)
    proc = _start_server(runs, tmp_path_factory.mktemp("lt-key") / "server.log", *LT_OPTIONS, api_key=LT_KEY)
    try:
        yield proc
    finally:
        proc.stop()
