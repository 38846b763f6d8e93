import shutil

import pytest
import torch

from nmt.averaging import average_run, average_state_dicts
from nmt.bundle import load_bundle
from nmt.checkpoint import save_snapshot, snapshots
from nmt.config import ModelConfig
from nmt.errors import NMTError
from nmt.model import Seq2Seq
from nmt.prediction import Translator
from tests.conftest import run_nmt


def tiny_model(seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelConfig(embedding_dim=8, hidden_size=12, encoder_layers=1, decoder_layers=1), 20, 20)


def test_average_of_identical_state_dicts_equals_them():
    state = tiny_model(0).state_dict()
    averaged = average_state_dicts([state, {k: v.clone() for k, v in state.items()}, state])
    assert averaged.keys() == state.keys()
    for key, tensor in state.items():
        assert torch.equal(averaged[key], tensor), key


def test_average_of_two_state_dicts_is_their_mean():
    a = {"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([0.5]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([[3.0, -2.0], [0.0, 1.0]]), "b": torch.tensor([1.5]), "n": torch.tensor(7)}
    averaged = average_state_dicts([a, b])
    assert torch.equal(averaged["w"], torch.tensor([[2.0, 0.0], [1.5, 2.5]]))
    assert torch.equal(averaged["b"], torch.tensor([1.0]))
    assert torch.equal(averaged["n"], torch.tensor(7))
    m1, m2 = tiny_model(0).state_dict(), tiny_model(1).state_dict()
    mean = average_state_dicts([m1, m2])
    assert all(torch.allclose(mean[k], (m1[k] + m2[k]) / 2) for k in m1)


def test_average_refuses_checkpoints_that_do_not_match():
    small, big = tiny_model(0).state_dict(), {}
    torch.manual_seed(0)
    big = Seq2Seq(ModelConfig(embedding_dim=8, hidden_size=16, encoder_layers=1, decoder_layers=1), 20, 20)
    with pytest.raises(NMTError, match="does not match"):
        average_state_dicts([small, big.state_dict()], ["a.pt", "b.pt"])
    fewer = dict(small)
    fewer.pop(next(iter(fewer)))
    with pytest.raises(NMTError, match="different parameters"):
        average_state_dicts([small, fewer])
    with pytest.raises(NMTError, match="differs"):
        average_state_dicts([{"n": torch.tensor(1)}, {"n": torch.tensor(2)}])


def test_snapshots_are_bounded_on_disk(tmp_path):
    m = tiny_model(0)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".step_00000005.pt.abc.tmp").write_bytes(b"torn write of a crashed run")
    for step in (10, 20, 30, 40, 50):
        save_snapshot(tmp_path, m, step, keep=3)
    assert [step for step, _ in snapshots(tmp_path)] == [30, 40, 50]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step_00000030.pt",
        "step_00000040.pt",
        "step_00000050.pt",
    ]  # no temporary files left either


@pytest.fixture
def run_with_snapshots(tiny_run, tmp_path):
    """A copy of the tiny run with three weight snapshots: the best weights, perturbed by -d, 0 and +d."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    bundle = load_bundle(run)
    base = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    torch.manual_seed(3)
    noise = {k: torch.randn_like(v) * 0.01 if v.is_floating_point() else v for k, v in base.items()}
    for step, sign in ((100, -1), (200, 0), (300, 1)):
        bundle.model.load_state_dict({k: base[k] + sign * noise[k] if v.is_floating_point() else v
                                      for k, v in base.items()})  # fmt: skip
        save_snapshot(run, bundle.model, step, keep=5)
    return run, base


@pytest.mark.slow
def test_averaged_bundle_holds_the_mean_and_translates(run_with_snapshots, tmp_path):
    run, base = run_with_snapshots
    out = average_run(run, 3, tmp_path / "avg")
    bundle = load_bundle(out)
    for key, tensor in bundle.model.state_dict().items():
        assert torch.allclose(tensor, base[key], atol=1e-6), key
    assert bundle.metadata["averaged_checkpoints"] == [100, 200, 300]
    original = Translator.from_run_dir(run).translate(["Ein Mann fährt Fahrrad."])
    averaged = Translator.from_run_dir(out).translate(["Ein Mann fährt Fahrrad."])
    assert averaged[0][0].text == original[0][0].text and averaged[0][0].text


@pytest.mark.slow
def test_cli_average_last_two_and_errors(run_with_snapshots, tmp_path):
    run, _ = run_with_snapshots
    proc = run_nmt("average", "--model", run, "--last", "2")
    assert "steps 200, 300" in proc.stdout
    out = run / "averaged_last_2"
    assert run_nmt("translate", "--model", out, input="Zwei Hunde spielen.\n").stdout.strip()
    too_many = run_nmt("average", "--model", run, "--last", "4", check=False)
    assert too_many.returncode == 2 and "fewer than --last 4" in too_many.stderr
    assert "Traceback" not in too_many.stderr
    into_model = run_nmt("average", "--model", run, "--last", "2", "--output", run, check=False)
    assert into_model.returncode == 2 and "Traceback" not in into_model.stderr
    (run / "checkpoints" / "step_00000300.pt").write_bytes(b"not a checkpoint")
    corrupt = run_nmt("average", "--model", run, "--last", "2", "--output", tmp_path / "x", check=False)
    assert corrupt.returncode == 2 and "step_00000300.pt" in corrupt.stderr


@pytest.mark.slow
def test_training_keeps_the_last_checkpoints_and_averages_them(tmp_path, data_dir):
    run = tmp_path / "run"
    run_nmt(
        "train", "--config", "configs/tiny.yaml", "--output-dir", run, "--quiet",
        "--set", "train.max_steps=20", "--set", "train.checkpoint_every_steps=5", "--set", "train.keep_checkpoints=2",
        "--set", "data.max_train_examples=1000", "--set", "data.max_valid_examples=20",
    )  # fmt: skip
    assert [step for step, _ in snapshots(run)] == [15, 20]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000015.pt", "step_00000020.pt"]
    proc = run_nmt("average", "--model", run, "--last", "2", "--output", tmp_path / "avg")
    assert "steps 15, 20" in proc.stdout
    assert run_nmt("translate", "--model", tmp_path / "avg", input="Ein Hund läuft.\n").stdout.strip()
