import os
import pickle

import pytest
import torch

from nmt.errors import NMTError
from nmt.files import atomic_torch_save, atomic_write_text, safe_torch_load


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_write_into_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(NMTError, match="cannot write"):
        atomic_write_text(tmp_path / "missing" / "f.txt", "x")


def test_torch_roundtrip(tmp_path):
    atomic_torch_save(tmp_path / "w.pt", {"a": torch.ones(2), "n": 3})
    loaded = safe_torch_load(tmp_path / "w.pt")
    assert loaded["n"] == 3 and torch.equal(loaded["a"], torch.ones(2))


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_loading_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "PWNED_MARKER"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": Exploit()}, f)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(NMTError, match="evil.pt"):
            safe_torch_load(path)
    finally:
        os.chdir(cwd)
    assert not marker.exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "w.pt"
    atomic_torch_save(path, {"a": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(NMTError, match=r"cannot load .*w\.pt"):
        safe_torch_load(path)
    with pytest.raises(NMTError, match="missing file"):
        safe_torch_load(tmp_path / "none.pt")
