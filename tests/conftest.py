"""Shared fixtures: the local Multi30k copy and a tiny model trained once per test session with the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "train.de").is_file():
        pytest.skip(f"Multi30k not found at {DATA_DIR} (set NMT_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir) -> Path:
    """configs/tiny.yaml trained once with `nmt train` on the local Multi30k copy."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    run_nmt("train", "--config", "configs/tiny.yaml", "--output-dir", run_dir, "--quiet")
    return run_dir


@pytest.fixture(scope="session")
def tiny_run_en_de(tmp_path_factory, data_dir) -> Path:
    """A second tiny model for the reverse pair (en-de), one epoch (seconds): a server with two language pairs."""
    run_dir = tmp_path_factory.mktemp("tiny-en-de") / "run"
    overrides = ["data.src_lang=en", "data.tgt_lang=de", "train.max_epochs=1", "name=tiny_en_de"]
    run_nmt(
        "train",
        "--config",
        "configs/tiny.yaml",
        "--output-dir",
        run_dir,
        "--quiet",
        *sum((["--set", o] for o in overrides), []),
    )
    return run_dir
