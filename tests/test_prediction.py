import threading

import pytest
import torch

import nmt.prediction
from nmt.prediction import Translator


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("beam", [1, 3])
def test_batches_run_one_per_thread_with_the_same_translations(tiny_run, data_dir, monkeypatch, torch_threads, beam):
    """With 2 torch threads, two batches are searched at once, one torch thread each; the answers are those of one
    batch at a time, in input order, blanks included."""
    translator = Translator.from_run_dir(tiny_run, dtype="fp32")
    sources = (data_dir / "val.de").read_text(encoding="utf-8").splitlines()[:120]
    sources[5] = sources[77] = " "
    seen = []
    searches = {"greedy_search": nmt.prediction.greedy_search, "beam_search": nmt.prediction.beam_search}

    def spy(name):
        def search(*args, **kwargs):
            seen.append((threading.get_ident(), torch.get_num_threads()))
            return searches[name](*args, **kwargs)

        return search

    for name in searches:
        monkeypatch.setattr(nmt.prediction, name, spy(name))
    torch.set_num_threads(1)
    serial = translator.translate(sources, beam_size=beam, n_best=min(beam, 2), batch_size=8)
    assert {threads for _, threads in seen} == {1} and len({ident for ident, _ in seen}) == 1
    seen.clear()
    torch.set_num_threads(2)
    done = []
    parallel = translator.translate(sources, beam_size=beam, n_best=min(beam, 2), batch_size=8, progress=done.append)
    assert len(seen) == 15 and {threads for _, threads in seen} == {1}
    assert len({ident for ident, _ in seen}) == 2 and threading.get_ident() not in {ident for ident, _ in seen}
    assert torch.get_num_threads() == 2
    assert sum(done) == len(sources)
    assert [[(h.text, round(h.score, 5)) for h in r] for r in parallel] == [
        [(h.text, round(h.score, 5)) for h in r] for r in serial
    ]
    assert parallel[5][0].text == "" and parallel[77][0].text == ""


@pytest.mark.slow
def test_one_batch_is_searched_on_all_threads(tiny_run, monkeypatch, torch_threads):
    translator = Translator.from_run_dir(tiny_run, dtype="fp32")
    seen = []
    search = nmt.prediction.beam_search

    def spy(*args, **kwargs):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return search(*args, **kwargs)

    monkeypatch.setattr(nmt.prediction, "beam_search", spy)
    torch.set_num_threads(2)
    translator.translate(["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."], beam_size=3)
    assert seen == [(threading.get_ident(), 2)]
