"""Search only, one process: each model's 1,000 test sentences in fp32, bf16, row-wise int8 (`--dtype int8`)
and torch's dynamic int8 (FBGEMM, per-batch activation scales: not used by nmt), beam 5 and greedy,
ROUNDS rounds alternating; prints seconds and BLEU, and whether each precision's texts change when the test set is
searched in another batching (batch-size 7 instead of the default).

    python benchmarks/int8_search.py RUN_DIR [RUN_DIR ...] > docs/results/int8_search/search.txt
"""

import os
import sys
import time
import warnings

import sacrebleu
import torch
from torch import nn

from nmt.prediction import Translator
from nmt.runtime import malloc_defaults

malloc_defaults()
DATA = os.environ.get("NMT_DATA_DIR", "../shared/data/multi30k")
src = open(f"{DATA}/test_2016_flickr.de", encoding="utf-8").read().splitlines()
ref = open(f"{DATA}/test_2016_flickr.en", encoding="utf-8").read().splitlines()


def translator(run: str, mode: str) -> Translator:
    if mode != "fbgemm":
        return Translator.from_run_dir(run, dtype=mode)
    tr = Translator.from_run_dir(run, dtype="fp32")  # then the old `--dtype int8`: torch's quantize_dynamic
    spec = dict.fromkeys((nn.LSTM, nn.GRU, nn.Linear), torch.ao.quantization.default_dynamic_qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr.model = torch.ao.quantization.quantize_dynamic(tr.model, spec, dtype=torch.qint8)
    return tr


for run in sys.argv[1:]:
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(int(os.environ.get("ROUNDS", "2"))):
        for mode in ("fp32", "bf16", "int8", "fbgemm"):
            tr = translator(run, mode)
            tr.translate(src[:50], beam_size=5)
            for beam in (5, 1):
                start = time.perf_counter()
                hyps = [r[0].text for r in tr.translate(src, beam_size=beam)]
                times.setdefault((mode, beam), []).append(time.perf_counter() - start)
                if len(times[(mode, beam)]) == 1:
                    other = [r[0].text for r in tr.translate(src, beam_size=beam, batch_size=7)]
                    moved = sum(a != b for a, b in zip(hyps, other, strict=True))
                    bleu = sacrebleu.corpus_bleu(hyps, [ref]).score
                    print(f"{run} {mode} beam {beam}: BLEU {bleu:.2f}, {moved} of 1000 texts differ at batch size 7")
            print(run, mode, {b: [round(t, 3) for t in times[(mode, b)]] for b in (5, 1)}, flush=True)
    for beam in (5, 1):
        best = {m: min(times[(m, beam)]) for m in ("fp32", "bf16", "int8", "fbgemm")}
        print(
            f"{run} beam {beam} best s:",
            {m: round(t, 3) for m, t in best.items()},
            f"int8 vs bf16 {best['bf16'] / best['int8']:.2f}x, vs fbgemm {best['fbgemm'] / best['int8']:.2f}x",
        )
