"""Translation time of one model against an ensemble of two copies of it (100 test sentences, 1 thread)."""

import time

import torch

from nmt.prediction import Translator

torch.set_num_threads(1)
src = open("/tmp/q/test100.de").read().splitlines()  # head -100 test_2016_flickr.de
one = Translator.from_run_dirs(["/tmp/q/base"])
two = Translator.from_run_dirs(["/tmp/q/base", "/tmp/q/base"])
seconds: dict[str, list[float]] = {}
outputs: dict[str, list[str]] = {}
for beam in (1, 5):
    for _ in range(2):
        for name, translator in (("1 model", one), ("2 models", two)):
            start = time.perf_counter()
            out = translator.translate(src, beam_size=beam)
            seconds.setdefault(f"{name} beam {beam}", []).append(round(time.perf_counter() - start, 2))
            outputs[f"{name} beam {beam}"] = [o[0].text for o in out]
for key, values in seconds.items():
    print(key, values)
for beam in (1, 5):
    print(f"same output beam {beam}:", outputs[f"1 model beam {beam}"] == outputs[f"2 models beam {beam}"])
print("load", open("/proc/loadavg").read())
