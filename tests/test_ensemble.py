from pathlib import Path

import pytest
import requests
import torch
from server_process import ServerProcess

from nmt.config import ModelConfig, TokenizerConfig
from nmt.ensemble import Ensemble
from nmt.model import Seq2Seq
from nmt.search import beam_search, greedy_search
from nmt.tokenizer import BOS_ID, PAD_ID
from tests.conftest import run_nmt

V = 30


def model(seed: int, attention: str = "luong") -> Seq2Seq:
    torch.manual_seed(seed)
    config = ModelConfig(
        embedding_dim=8, hidden_size=16, encoder_layers=1, decoder_layers=1, dropout=0.0, embedding_dropout=0.0,
        attention=attention,
    )  # fmt: skip
    return Seq2Seq(config, V, V).eval()


def sources():
    torch.manual_seed(1)
    src = torch.randint(4, V, (3, 6))
    lengths = torch.tensor([6, 4, 2])
    src[1, 4:] = PAD_ID
    src[2, 2:] = PAD_ID
    return src, lengths, torch.tensor([9, 7, 5])


def hyps(m, search, **kw):
    src, lengths, limits = sources()
    with torch.inference_mode():
        out = search(m, src, lengths, limits, **kw)
    return [[(h.tokens, round(h.score, 4)) for h in sentence] for sentence in out]


@pytest.mark.parametrize("search, kw", [(greedy_search, {}), (beam_search, {"beam_size": 3, "n_best": 3})])
def test_ensemble_of_one_model_equals_the_model(search, kw):
    m = model(0)
    assert hyps(Ensemble([m]), search, **kw) == hyps(m, search, **kw)


@pytest.mark.parametrize("search, kw", [(greedy_search, {}), (beam_search, {"beam_size": 3, "n_best": 2})])
def test_ensemble_of_two_copies_equals_the_model(search, kw):
    m = model(0)
    copy = model(0)
    assert hyps(Ensemble([m, copy]), search, **kw) == hyps(m, search, **kw)


def test_ensemble_step_averages_the_members_log_probabilities():
    a, b = model(0), model(1, attention="bahdanau")  # different weights and architectures
    src, lengths, _ = sources()
    tokens = torch.full((3, 1), BOS_ID)
    with torch.inference_mode():
        expected = []
        for m in (a, b):
            memory, state = m.encode(src, lengths)
            expected.append(torch.log_softmax(m.decoder(tokens, state, memory)[0], dim=-1))
        ensemble = Ensemble([a, b])
        memory, state = ensemble.encode(src, lengths)
        scores, _ = ensemble.decoder(tokens, state, memory)
    assert torch.allclose(scores, (expected[0] + expected[1]) / 2, atol=1e-6)
    assert not torch.allclose(expected[0], expected[1], atol=1e-3)  # the average is not either member's


def test_ensemble_greedy_follows_the_averaged_distribution():
    """Greedy decoding of the ensemble picks, at each step, the argmax of the members' mean log-probabilities."""
    a, b = model(0), model(1)
    src, lengths, limits = sources()
    with torch.inference_mode():
        out = greedy_search(Ensemble([a, b]), src, lengths, limits)
        for i, sentence in enumerate(out):
            tokens = [BOS_ID] + sentence[0].tokens
            states = [m.encode(src[i : i + 1], lengths[i : i + 1]) for m in (a, b)]
            for t, expected in enumerate(sentence[0].tokens):
                mean = 0
                for j, m in enumerate((a, b)):
                    memory, state = states[j]
                    logits, state = m.decoder(torch.tensor([[tokens[t]]]), state, memory)
                    states[j] = (memory, state)
                    mean = mean + torch.log_softmax(logits[0, -1], dim=-1) / 2
                assert int(mean.argmax()) == expected


@pytest.mark.slow
def test_cli_ensemble_of_the_same_model_translates_like_it(tiny_run):
    text = "Ein Mann fährt Fahrrad.\nZwei Hunde spielen im Schnee.\n"
    single = run_nmt("translate", "--model", tiny_run, input=text).stdout
    double = run_nmt("translate", "--model", tiny_run, "--model", tiny_run, input=text).stdout
    assert double == single and len(single.splitlines()) == 2


@pytest.mark.slow
def test_cli_ensemble_refuses_models_with_different_vocabularies(tiny_run, tmp_path, data_dir):
    from nmt.tokenizer import train_sentencepiece

    other = tmp_path / "other"
    other.mkdir()
    for f in tiny_run.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    lines = (data_dir / "train.en").read_text(encoding="utf-8").splitlines()[:3000]
    train_sentencepiece(iter(lines), other / "spm.model", TokenizerConfig(vocab_size=1000, model_type="bpe"))
    proc = run_nmt("translate", "--model", tiny_run, "--model", other, input="Ein Mann.\n", check=False)
    assert proc.returncode == 2
    assert "vocabularies" in proc.stderr and "differ" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def partner_run(tiny_run, tmp_path_factory) -> Path:
    """Another tiny de-en model (seed 2, one epoch) trained with tiny_run's SentencePiece model: an ensemble partner."""
    run_dir = tmp_path_factory.mktemp("partner") / "run"
    run_dir.mkdir()
    (run_dir / "spm.model").write_bytes((tiny_run / "spm.model").read_bytes())
    run_nmt(
        "train", "--config", "configs/tiny.yaml", "--output-dir", run_dir, "--quiet",
        "--set", "seed=2", "--set", "train.max_epochs=1",
    )  # fmt: skip
    return run_dir


@pytest.mark.slow
def test_serve_ensemble_answers_like_the_cli(tiny_run, partner_run, tmp_path):
    """`nmt serve --model A,B` serves one ensemble for the pair: its answers are `nmt translate --model A --model B`'s
    (one thread each: the search is batch-invariant), and /info names the members."""
    lines = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest ein Buch am Strand."]
    text = "\n".join(lines) + "\n"
    cli = run_nmt("translate", "--model", tiny_run, "--model", partner_run, "--threads", "1", input=text).stdout
    alone = run_nmt("translate", "--model", tiny_run, "--threads", "1", input=text).stdout
    assert cli != alone  # the partner changes the search, or the test would show nothing
    server = ServerProcess.ready(f"{tiny_run},{partner_run}", tmp_path / "server.log", "--threads", "1")
    try:
        answer = requests.post(f"{server.url}/predict", json={"texts": lines}, timeout=60).json()
        info = requests.get(f"{server.url}/info", timeout=10).json()
    finally:
        server.stop()
    assert answer["translations"] == cli.splitlines()
    assert info["models"][0]["ensemble"] == [str(tiny_run), str(partner_run)]
    assert "worker ready: 1 model(s) (de-en from" in server.log()


@pytest.mark.slow
def test_serve_refuses_an_ensemble_it_cannot_build(tiny_run, tiny_run_en_de, tmp_path):
    """Before the server starts: members of different pairs, a member that is not a run directory."""
    proc = run_nmt("serve", "--model", f"{tiny_run},{tiny_run_en_de}", check=False, timeout=120)
    assert proc.returncode == 2 and "different language pairs" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_nmt("serve", "--model", f"{tiny_run},{tmp_path}", check=False, timeout=120)
    assert proc.returncode == 2 and "is not a run directory" in proc.stderr
