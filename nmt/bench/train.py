"""`nmt bench train`: training throughput and achieved matmul FLOP/s against the measured peak."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nmt.bench.common import (
    machine_info,
    machine_line,
    positive_int,
    print_lines,
    write_json,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config (its data, model and batch size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--steps", type=positive_int, default=20, help="timed training steps (default: 20)")
    p.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: one per core)")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.set_defaults(func=bench_train)


def bench_train(args: argparse.Namespace) -> int:
    """Train `--steps` steps on the config's real data; report tokens/s and achieved vs peak matmul GFLOP/s."""
    import tempfile

    import numpy as np
    import torch

    from nmt.config import load_config
    from nmt.data import make_batches
    from nmt.flops import peak_for, training_flops
    from nmt.precision import describe
    from nmt.training import Run

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config, args.set)
    with tempfile.TemporaryDirectory(prefix="nmt-bench-") as tmp:
        setup_start = time.perf_counter()
        run = Run(config, Path(tmp) / "run", show_progress=False)
        setup_s = time.perf_counter() - setup_start
        corpus = run.data.train
        batches = make_batches(
            corpus.src_lengths,
            corpus.tgt_lengths,
            run.data.train_indices,
            config.train.batch_tokens,
            shuffle=True,
            seed=config.seed,
        )
        needed = args.warmup + args.steps
        if len(batches) < needed:
            batches = batches * (needed // len(batches) + 1)
        for indices in batches[: args.warmup]:
            run.train_step(indices, config.train.lr)
        timed = batches[args.warmup : needed]
        src_tokens = sum(int(corpus.src_lengths[i].sum()) + len(i) for i in timed)
        tgt_tokens = sum(run.target_tokens(i) for i in timed)
        flops = sum(
            training_flops(run.model.shapes, (corpus.src_lengths[i] + 1).tolist(), (corpus.tgt_lengths[i] + 1).tolist())
            for i in timed
        )
        start = time.perf_counter()
        for indices in timed:
            run.train_step(indices, config.train.lr)
        seconds = time.perf_counter() - start
        params = sum(p.numel() for p in run.model.parameters())
        run.dist.close()
    precision = run.precision
    peak, peaks = peak_for(precision)
    achieved = flops / seconds / 1e9
    report = {
        "benchmark": "train",
        "config": str(args.config),
        "overrides": args.set,
        "parameters": params,
        "steps": args.steps,
        "batch_tokens": config.train.batch_tokens,
        "mean_sentences_per_batch": round(float(np.mean([len(i) for i in timed])), 1),
        "seconds": round(seconds, 3),
        "setup_seconds": round(setup_s, 1),
        "target_tokens_per_s": round(tgt_tokens / seconds),
        "source_target_tokens_per_s": round((src_tokens + tgt_tokens) / seconds),
        "achieved_gflops": round(achieved, 1),
        "precision": precision,
        "fp32_step_loop": run.model.decoder.fp32_step_loop,  # the fp32 decoder's RNN through TrainingRNN
        "peak_gflops": round(peak, 1),
        "peaks_gflops": {k: round(v, 1) for k, v in peaks.items()},
        "fraction_of_peak": round(achieved / peak, 3),
        "machine": machine_info(),
    }
    print_lines(
        f"{args.config}: {params:,} parameters, {args.steps} steps of ~{config.train.batch_tokens} target tokens",
        f"target tokens/s: {report['target_tokens_per_s']:,}",
        f"source+target tokens/s: {report['source_target_tokens_per_s']:,}",
        f"achieved matmul: {achieved:.1f} GFLOP/s",
        f"precision: {describe(precision, run.device)}",
        f"fp32 decoder RNN: {'the step loop' if report['fp32_step_loop'] else 'as built (oneDNN on CPU)'}",
        f"measured {precision} matmul peak: {peak:.1f} GFLOP/s",
        f"fraction of peak: {achieved / peak:.1%}",
        machine_line(report["machine"]),
    )
    write_json(args.json, report)
    return 0
