"""bf16 and int8: the options are validated, "auto" falls back to fp32 without native bf16, training under bf16
learns, and search in every precision translates the synthetic task as fp32 does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_nmt
from synthetic import write_reversal_task

from nmt import precision
from nmt.cli import build_parser
from nmt.config import ModelConfig, config_from_dict
from nmt.errors import NMTError
from nmt.evaluation import bleu
from nmt.int8 import Int8Linear, Int8RNN
from nmt.model import Seq2Seq
from nmt.prediction import Translator


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"decode": {"dtype": "fp16"}}, "decode.dtype"),
        ({"train": {"precision": "int4"}}, "train.precision"),
        ({"train": {"amp": True}}, "train.amp"),  # an unknown key, named
    ],
)
def test_precision_options_are_validated(raw, key):
    with pytest.raises(NMTError, match=f"'{key}'"):
        config_from_dict(raw, "x.yaml")


@pytest.mark.parametrize("command", ["translate", "evaluate", "serve"])
def test_cli_dtype_choices(command, capsys):
    extra = ["--split", "test"] if command == "evaluate" else []
    args = build_parser().parse_args([command, "--model", "m", "--dtype", "int8+bf16", *extra])
    assert args.dtype == "int8+bf16"
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--model", "m", "--dtype", "fp16", *extra])
    error = capsys.readouterr().err  # argparse's message (its words change between Python versions)
    assert "--dtype" in error and "fp16" in error


def test_auto_is_fp32_where_bf16_is_not_native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    monkeypatch.setattr(precision, "_measured_speedup", [])
    assert precision.resolve_train_precision("auto", "cpu") == "fp32"
    assert precision.resolve_search_dtype("auto", "cpu") == "fp32"
    assert precision.resolve_search_dtype("bf16", "cpu") == "bf16"  # asked for explicitly: runs, emulated
    assert "emulated" in precision.describe("bf16", "cpu")
    assert precision._measured_speedup == []  # nothing timed without native bf16
    assert precision.resolve_train_precision("fp32", "cpu") == "fp32"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="bf16 runs natively through oneDNN only")
@pytest.mark.parametrize(("speedup", "auto"), [(2.3, "bf16"), (1.6, "bf16"), (1.2, "fp32"), (0.62, "fp32")])
def test_auto_takes_bf16_only_where_it_is_measured_faster(monkeypatch, speedup, auto):
    """avx512_bf16 in the flags is not enough: on an Intel Xeon without AMX, bf16 products run at 0.5-0.7x fp32."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    monkeypatch.setattr(precision, "_measured_speedup", [speedup])
    assert precision.resolve_train_precision("auto", "cpu") == (precision.AUTO_TRAIN if auto == "bf16" else "fp32")
    assert precision.resolve_search_dtype("auto", "cpu") == auto  # bf16 native but no int8 dot products
    assert precision.resolve_train_precision("bf16", "cpu") == "bf16"  # asked for: runs, and the log says how fast
    assert f"bf16 matmuls measured at {speedup:.2f}x fp32 here" in precision.describe("bf16", "cpu")


@pytest.mark.skipif(not precision.bf16_native("cpu"), reason="needs native bf16")
def test_bf16_speedup_is_measured_once(monkeypatch):
    monkeypatch.setattr(precision, "_measured_speedup", [])
    first = precision.bf16_speedup()
    assert 0.1 < first < 20 and precision.bf16_speedup() == first and precision._measured_speedup == [first]


def test_int8_is_cpu_only():
    with pytest.raises(NMTError, match="CPU only"):
        precision.resolve_search_dtype("int8+bf16", "cuda")


def test_int8_quantizes_a_copy_and_mixed_keeps_the_output_layer_for_bf16():
    model = Seq2Seq(ModelConfig(embedding_dim=8, hidden_size=16, attention="luong"), 30, 30).eval()
    kinds = {}
    for dtype in ("int8", "int8+bf16"):
        quantized = precision.prepare_for_search(model, dtype)
        kinds[dtype] = {name: type(m) for name, m in quantized.named_modules()}
        assert kinds[dtype]["decoder.rnn"] is Int8RNN and kinds[dtype]["encoder.rnn"] is Int8RNN
        assert kinds[dtype]["decoder.readout"] is Int8Linear and kinds[dtype]["bridge.maps.0"] is Int8Linear
    assert kinds["int8"]["decoder.output"] is Int8Linear
    assert kinds["int8+bf16"]["decoder.output"] is torch.nn.Linear
    assert type(model.decoder.rnn) is torch.nn.LSTM  # the fp32 model is left as it was
    assert precision.prepare_for_search(model, "bf16") is model


def test_auto_search_is_int8_where_the_cpu_has_int8_dot_products(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512f", "avx512_vnni", "avx512_bf16"}))
    assert precision.resolve_search_dtype("auto", "cpu") == "int8"
    assert "int8 dot products: avx512_vnni" in precision.describe("int8", "cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve_search_dtype("auto", "cpu") == "fp32"
    assert "no int8 dot products" in precision.describe("fp32", "cpu")
    assert "likely slower" in precision.describe("int8", "cpu")  # asked for explicitly: runs, and says so


@pytest.fixture(scope="module")
def bf16_reversal(tmp_path_factory):
    """The synthetic reversal task trained with `nmt train` under bf16 autocast."""
    task = write_reversal_task(tmp_path_factory.mktemp("bf16") / "task", train=2000)
    run_dir = task / "run"
    run_nmt(
        "train",
        "--config",
        task / "reversal.yaml",
        "--set",
        f"data.path={task}",
        "--set",
        "train.precision=bf16",
        "--set",
        "train.max_epochs=6",
        "--output-dir",
        run_dir,
        "--quiet",
    )
    return task, run_dir


@pytest.mark.slow
def test_training_under_bf16_learns(bf16_reversal):
    _, run_dir = bf16_reversal
    assert "precision bf16 on cpu" in (run_dir / "train.log").read_text()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train_loss"] for m in metrics if m["type"] == "train"]
    assert len(losses) >= 3 and losses[-1] < 0.5 * losses[0]
    assert max(m["valid_bleu"] for m in metrics if m["type"] == "valid") > 60


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 3])
def test_search_in_every_precision_translates_as_fp32(bf16_reversal, beam):
    task, run_dir = bf16_reversal
    sources = (task / "test.src").read_text().splitlines()
    refs = (task / "test.tgt").read_text().splitlines()
    out = {}
    for dtype in ("fp32", "bf16", "int8", "int8+bf16"):
        translator = Translator.from_run_dir(run_dir, dtype=dtype)
        assert translator.dtype == dtype and dtype in translator.precision
        out[dtype] = [r[0].text for r in translator.translate(sources, beam_size=beam)]
    fp32_bleu = bleu(out["fp32"], refs)
    assert fp32_bleu > 60  # a model that has learned the task, so agreement means something
    for dtype in ("bf16", "int8", "int8+bf16"):
        same = sum(a == b for a, b in zip(out[dtype], out["fp32"], strict=True)) / len(sources)
        assert same >= 0.9, (dtype, same)
        assert bleu(out[dtype], refs) > fp32_bleu - 3, dtype


@pytest.mark.slow
def test_bf16_search_casts_each_weight_once_per_call(bf16_reversal):
    """Autocast's bf16 copy of a weight serves every step of a call (under inference_mode autocast keeps none and
    casts each weight again at every step: 12% of a bf16 greedy search)."""
    task, run_dir = bf16_reversal
    translator = Translator.from_run_dir(run_dir, dtype="bf16")
    shape = list(translator.model.decoder.output.weight.shape)  # (vocabulary, readout): no other tensor has it
    sources = (task / "test.src").read_text().splitlines()[:20]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        steps = max(len(r[0].text.split()) for r in translator.translate(sources, beam_size=3))
    casts = [e for e in prof.events() if e.name == "aten::copy_" and e.input_shapes and e.input_shapes[0] == shape]
    assert steps > 3 and len(casts) == 1, (steps, len(casts))


@pytest.mark.slow
def test_server_worker_searches_in_the_requested_dtype(bf16_reversal):
    from serve.worker import TranslationAPI

    _, run_dir = bf16_reversal
    api = TranslationAPI({"src-tgt": (str(run_dir),)}, threads=1, dtype="int8+bf16", max_batch_size=1)
    api.setup("cpu")
    translator = api.translators["src-tgt"]
    assert translator.dtype == "int8+bf16" and type(translator.model.decoder.rnn) is Int8RNN


MEMORY_PROBE = """
import random, sys
import torch
from nmt.prediction import Translator

torch.set_num_threads(1)
translator = Translator.from_run_dir(sys.argv[1], dtype=sys.argv[3])
sources = open(sys.argv[2], encoding="utf-8").read().splitlines()
rng = random.Random(0)

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

def batches(n):  # a server's traffic: batches of 1-12 random sentences at several beam sizes
    for _ in range(n):
        translator.translate(rng.sample(sources, rng.randint(1, 12)), beam_size=rng.choice([1, 2, 3, 4]))

batches(150)
before = resident_mb()
batches(150)
print(resident_mb() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_search_memory_levels_off(bf16_reversal, tmp_path, dtype):
    """oneDNN compiles a primitive per new batch shape; capped caches keep a long-running bf16 search flat (with
    the default 1,024 per cache this process grew by tens of MB over the second 150 batches). int8's matrix
    products run in oneDNN too."""
    if dtype == "bf16" and not precision.bf16_native("cpu"):
        pytest.skip("needs native bf16 (oneDNN's bf16 kernels)")
    task, run_dir = bf16_reversal
    env = {k: v for k, v in os.environ.items() if k not in precision.ONEDNN_CACHE_VARIABLES}
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(run_dir), str(task / "test.src"), dtype],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert float(probe.stdout) < 8, f"grew {float(probe.stdout):.1f} MB over 150 batches"
