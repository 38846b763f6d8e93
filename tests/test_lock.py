"""The dependency lock (requirements/dev.txt, requirements/main.txt, made by `make lock`): in step with
pyproject.toml, the runtime half at the same versions, every pin hashed, and the environment running the tests
installed from it (so a green run names the versions a fresh machine gets)."""

from __future__ import annotations

import os
import re
from importlib import metadata

import pytest
import tomllib
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M)


def _pins(name: str) -> dict[str, tuple[str, int]]:
    """{package: (version, number of hashes)} of a lock file."""
    text = (REPO / "requirements" / name).read_text(encoding="utf-8")
    return {canonicalize_name(m[1]): (m[2], m[3].count("--hash=")) for m in PIN.finditer(text)}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.mark.parametrize("name", ["dev.txt", "main.txt"])
def test_every_pin_is_exact_and_hashed(name):
    text = (REPO / "requirements" / name).read_text(encoding="utf-8")
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    pins = _pins(name)
    assert len(pins) == len(requirement_lines) > 20, [line for line in requirement_lines if "==" not in line]
    assert all(hashes >= 1 for _, hashes in pins.values()), [p for p, (_, h) in pins.items() if h == 0]


def test_lock_satisfies_pyproject():
    """Each dependency of pyproject.toml (and the dev extra) is locked, at a version its range admits."""
    dev, main = _pins("dev.txt"), _pins("main.txt")
    project = _project()
    for line, lock in [(d, main) for d in project["dependencies"]] + [
        (d, dev) for d in project["optional-dependencies"]["dev"]
    ]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is not in the lock: run `make lock`"
        version = Version(lock[name][0])
        assert requirement.specifier.contains(version, prereleases=True), (line, str(version))


def test_runtime_lock_is_the_dev_lock_s_versions():
    dev, main = _pins("dev.txt"), _pins("main.txt")
    assert set(main) <= set(dev)
    assert {p: v for p, (v, _) in main.items()} == {p: dev[p][0] for p in main}


def test_tests_run_on_the_locked_versions():
    """The environment running this suite holds every locked package at its locked version (`make setup`)."""
    if os.environ.get("NMT_TEST_LATEST"):
        pytest.skip("make test-latest runs on the newest releases, not the lock")
    wrong = {}
    for name, (version, _) in _pins("dev.txt").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"installed versions differ from the lock (locked, installed): {wrong}; run `make setup`"
