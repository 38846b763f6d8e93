"""`nmt bench quality`: train a config from scratch, then score it on validation and test (one README row)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from nmt.bench.common import machine_info, machine_line, positive_int, print_lines, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config to train")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--output-dir", help="run directory (default: runs/<config file stem>)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    p.add_argument("--skip-train", action="store_true", help="only score the model already in the run directory")
    p.add_argument("--beam-size", type=positive_int, help="beam size (default: the config's)")
    p.add_argument("--length-penalty", type=float, help="GNMT length-penalty alpha (default: the config's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", help="also write the report to this JSON file")
    p.add_argument("--plot", help="write validation BLEU against training minutes to this PNG file")
    p.set_defaults(func=bench_quality)


def score_splits(run_dir: Path, beam_size: int | None, length_penalty: float | None = None) -> list[dict[str, Any]]:
    """BLEU (cased and lowercased) and chrF of the run's best model on validation and test, beam and greedy."""
    from nmt.data import load_split
    from nmt.evaluation import bleu, corpus_scores
    from nmt.prediction import Translator

    translator = Translator.from_run_dir(run_dir)
    data = translator.config.data
    beam, _ = translator.search_options(beam_size, None)
    rows = []
    for split in (data.valid_split, data.test_split):
        ds = load_split(data, split)
        sources, references = list(ds["src"]), list(ds["tgt"])
        for size in dict.fromkeys((beam, 1)):
            start = time.perf_counter()
            hypotheses = [r[0].text for r in translator.translate(sources, size, length_penalty=length_penalty)]
            seconds = time.perf_counter() - start
            scores = corpus_scores(hypotheses, references)
            rows.append(
                {
                    "split": split,
                    "beam_size": size,
                    "bleu": scores["bleu"]["score"],
                    "bleu_lowercase": round(bleu(hypotheses, references, lowercase=True), 2),
                    "chrf": scores["chrf"]["score"],
                    "bleu_signature": scores["bleu"]["signature"],
                    "chrf_signature": scores["chrf"]["signature"],
                    "seconds": round(seconds, 2),
                }
            )
    return rows


def bench_quality(args: argparse.Namespace) -> int:
    """Train (unless --skip-train), then score validation and test; one report per run."""
    from nmt.bundle import METRICS_FILE, read_metadata, read_run_config
    from nmt.config import load_config
    from nmt.training import train

    run_dir = Path(args.output_dir) if args.output_dir else Path("runs") / Path(args.config).stem
    stop_reason = "not trained by this command (--skip-train)"
    if not args.skip_train:
        config = load_config(args.config, args.set)
        stop_reason = train(config, run_dir, resume=args.resume, show_progress=not args.quiet).stop_reason
    config, meta = read_run_config(run_dir), read_metadata(run_dir)
    rows = score_splits(run_dir, args.beam_size, args.length_penalty)
    metrics = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()]
    valid = [m for m in metrics if m["type"] == "valid"]
    report = {
        "benchmark": "quality",
        "config": str(args.config),
        "run_dir": str(run_dir),
        "languages": f"{config.data.src_lang}-{config.data.tgt_lang}",
        "parameters": meta["parameters"],
        "training_minutes": round(meta["training_seconds"] / 60, 1),
        "epochs": meta["epochs"],
        "steps": meta["steps"],
        "best_step": meta["best_step"],
        "stop_reason": stop_reason,
        "length_penalty": args.length_penalty if args.length_penalty is not None else config.decode.length_penalty,
        "curve": [{k: m[k] for k in ("epoch", "step", "elapsed", "valid_bleu", "valid_ppl")} for m in valid],
        "scores": rows,
        "machine": machine_info(),
    }
    lines = [
        f"{run_dir}: {report['parameters']:,} parameters, {report['languages']}, trained {report['training_minutes']} "
        f"min ({meta['epochs']} epochs, {meta['steps']} steps; {stop_reason}), best step {meta['best_step']}",
        *(
            f"{r['split']} beam {r['beam_size']}: BLEU {r['bleu']:.2f} (lowercased {r['bleu_lowercase']:.2f}) "
            f"chrF {r['chrf']:.2f} [{r['seconds']:.1f} s]"
            for r in rows
        ),
        f"signatures: {rows[0]['bleu_signature']} | {rows[0]['chrf_signature']}",
        machine_line(report["machine"]),
    ]
    print_lines(*lines)
    write_json(args.json, report)
    if args.plot:
        from nmt.plot import plot_bleu_against_time

        plot_bleu_against_time(report["curve"], Path(args.plot), f"{config.name} ({report['languages']})")
    return 0
