"""Search only: one batch at a time on 2 torch threads ("2thr"), on 1 ("1thr"), or two batches at once in two Python
threads with one torch thread each ("2x1"); best of 2, and whether the hypotheses are identical.
usage: python par.py RUN_DIR DTYPE"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from nmt.data import pad_sources
from nmt.precision import autocast
from nmt.prediction import Translator
from nmt.search import beam_search, greedy_search, max_output_lengths

run, dtype = sys.argv[1], sys.argv[2]
tr = Translator.from_run_dir(run, dtype=dtype)
texts = open("/work/shared/data/multi30k/test_2016_flickr.de").read().splitlines()
dec = tr.config.decode
ids = tr.src_tokenizer.encode(texts)
order = sorted(range(len(ids)), key=lambda j: len(ids[j]))


def batches(beam):
    bs = dec.sentences_per_batch(beam)
    return [order[s : s + bs] for s in range(0, len(order), bs)]


def run_batch(chunk, beam):
    src, lengths = pad_sources([ids[j] for j in chunk])
    limits = max_output_lengths(lengths, dec.max_length_ratio, dec.max_length_offset)
    with torch.inference_mode(), autocast(tr.dtype, tr.device):
        if beam == 1:
            return greedy_search(tr.model, src, lengths, limits, dec.length_penalty)
        return beam_search(tr.model, src, lengths, limits, beam, 1, dec.length_penalty)


def serial(beam, threads):
    torch.set_num_threads(threads)
    t = time.perf_counter()
    out = [run_batch(c, beam) for c in batches(beam)]
    return time.perf_counter() - t, out


def parallel(beam, workers):
    bs = batches(beam)
    t = time.perf_counter()
    with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as ex:
        out = list(ex.map(lambda c: run_batch(c, beam), bs))
    return time.perf_counter() - t, out


tr.model.eval()
for beam in (5, 1):
    serial(beam, 2)  # warm-up
    times, hyps = {}, {}
    ways = {"2thr": lambda b: serial(b, 2), "1thr": lambda b: serial(b, 1), "2x1": lambda b: parallel(b, 2)}
    for _ in range(2):
        for name, way in ways.items():
            seconds, out = way(beam)
            times.setdefault(name, []).append(seconds)
            hyps[name] = [h[0].tokens for b in out for h in b]
    rates = ", ".join(f"{k} {len(texts) / min(v):.1f} sent/s" for k, v in times.items())
    print(f"{dtype} beam {beam}: {rates} | identical 2x1 vs 2thr: {hyps['2x1'] == hyps['2thr']}", flush=True)
