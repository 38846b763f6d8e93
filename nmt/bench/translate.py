"""`nmt bench translate`: whole-process translation speed, model load time, peak memory, BLEU."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nmt.bench.common import (
    DEFAULT_TEST_SPLIT,
    default_test_files,
    machine_info,
    machine_line,
    positive_int,
    print_lines,
    write_json,
)
from nmt.errors import NMTError
from nmt.precision import add_dtype_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run directory of a trained model")
    p.add_argument("--input", help=f"source sentences (default: $NMT_DATA_DIR/{DEFAULT_TEST_SPLIT}.<source language>)")
    p.add_argument("--ref", help="references for BLEU (default with the default input: the test set's)")
    p.add_argument("--beam-size", type=positive_int, help="beam size (default: the config's; 1 = greedy)")
    p.add_argument("--batch-size", type=positive_int, help="sentences per batch (default: the config's)")
    add_dtype_argument(p)
    p.add_argument("--threads", type=positive_int, help="torch threads (default: one per core)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=bench_translate)


def process_age() -> float:
    """Seconds since this process started (so a figure includes interpreter start-up and imports)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start


def bench_translate(args: argparse.Namespace) -> int:
    """Translate a file as `nmt translate` would; report whole-process and search-only speed, memory, BLEU."""
    import resource

    import torch

    from nmt.data import read_lines
    from nmt.evaluation import corpus_scores
    from nmt.flops import peak_for, search_flops
    from nmt.prediction import Translator

    if args.threads:
        torch.set_num_threads(args.threads)
    src_path, ref_path = (
        (Path(args.input), Path(args.ref) if args.ref else None) if args.input else (default_test_files(args.model))
    )
    sources = read_lines(src_path)
    references = read_lines(ref_path) if ref_path else None
    if references is not None and len(references) != len(sources):
        raise NMTError(f"line-count mismatch: {src_path} has {len(sources)} lines, {ref_path} has {len(references)}")
    load_start = time.perf_counter()
    translator = Translator.from_run_dir(args.model, dtype=args.dtype)
    load_s = time.perf_counter() - load_start
    beam, _ = translator.search_options(args.beam_size, None)
    start = time.perf_counter()
    results = translator.translate(sources, beam, batch_size=args.batch_size)
    translate_s = time.perf_counter() - start
    hypotheses = [r[0].text for r in results]
    total_s = process_age()
    out_lengths = [len(ids) + 1 for ids in translator.tgt_tokenizer.encode(hypotheses)]
    out_tokens = sum(out_lengths)
    src_lengths = [len(ids) + 1 for ids in translator.src_tokenizer.encode(sources)]
    achieved = search_flops(translator.model.shapes, src_lengths, out_lengths, beam) / translate_s / 1e9
    peak, peaks = peak_for(translator.dtype)
    report = {
        "benchmark": "translate",
        "model": str(args.model),
        "input": str(src_path),
        "sentences": len(sources),
        "beam_size": beam,
        "batch_size": args.batch_size or translator.config.decode.sentences_per_batch(beam),
        "dtype": translator.dtype,
        "whole_process_seconds": round(total_s, 2),
        "model_load_seconds": round(load_s, 2),
        "translate_seconds": round(translate_s, 2),
        "sentences_per_s": round(len(sources) / total_s, 1),
        "search_sentences_per_s": round(len(sources) / translate_s, 1),
        "target_tokens_per_s": round(out_tokens / translate_s),
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": round(peak, 1),
        "peaks_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "fraction_of_peak": round(achieved / peak, 3),
        "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine_info(),
    }
    lines = [
        f"{args.model}: {len(sources)} sentences from {src_path}, beam {beam}, {translator.precision}",
        f"whole process: {total_s:.2f} s, {report['sentences_per_s']} sentences/s "
        f"(start-up and imports {total_s - load_s - translate_s:.2f} s, model load {load_s:.2f} s)",
        f"search: {translate_s:.2f} s, {report['search_sentences_per_s']} sentences/s, "
        f"{report['target_tokens_per_s']:,} target tokens/s",
        f"search matmul (estimate): {achieved:.1f} GFLOP/s, {achieved / peak:.1%} of the measured "
        f"{translator.dtype} peak {peak:.1f} GFLOP/s",
        f"peak memory: {report['peak_memory_mib']} MiB",
    ]
    if references is not None:
        scores = corpus_scores(hypotheses, references)
        report["bleu"] = scores["bleu"]["score"]
        report["bleu_signature"] = scores["bleu"]["signature"]
        lines.append(f"BLEU: {report['bleu']} ({report['bleu_signature']})")
    lines.append(machine_line(report["machine"]))
    print_lines(*lines)
    write_json(args.json, report)
    return 0
