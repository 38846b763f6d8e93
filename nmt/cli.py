"""The `nmt` command: train, translate, evaluate, average, serve, bench."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from nmt import __version__
from nmt.cli_types import positive_int
from nmt.errors import NMTError
from nmt.precision import add_dtype_argument, bound_onednn_caches
from nmt.runtime import malloc_defaults, mkl_defaults, openmp_defaults

SPLIT_ROLES = {"train": "train_split", "valid": "valid_split", "validation": "valid_split", "test": "test_split"}


def _add_decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="run directory of a trained model; repeat it to ensemble models that share a vocabulary",
    )
    p.add_argument("--beam-size", type=positive_int, help="beam size (1 = greedy; default: the config's)")
    p.add_argument("--batch-size", type=positive_int, help="sentences per batch (default: the config's)")
    p.add_argument("--length-penalty", type=float, help="GNMT length-penalty alpha (default: the config's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    add_dtype_argument(p)
    p.add_argument("--threads", type=positive_int, help="torch threads (default: one per core)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `nmt` parser. With `command` (the sub-command on the command line), the options of the other heavy
    sub-commands (serve, bench) are left out, so that `nmt translate` does not import the server or benchmarks."""
    parser = argparse.ArgumentParser(prog="nmt", description=__doc__)
    parser.add_argument("--version", action="version", version=f"nmt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config")
    p.add_argument("--config", help="YAML config file (optional with --resume: the run directory's config is used)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (YAML value)")
    p.add_argument("--output-dir", help="run directory (default: runs/<config file stem>)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory from its checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines on stderr")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("prepare", help="read, clean, train SentencePiece and tokenize ahead of `nmt train`")
    p.add_argument("--config", required=True, help="YAML config file (the one `nmt train` will be given)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (YAML value)")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("translate", help="translate text, one sentence per line (stdin to stdout by default)")
    _add_decode_options(p)
    p.add_argument(
        "--n-best", type=positive_int, default=1, help="print N hypotheses per input as 'i ||| text ||| score'"
    )
    p.add_argument("--max-length", type=positive_int, help="most output tokens (default: from the source length)")
    p.add_argument("--input", help="input file (default: stdin)")
    p.add_argument("--output", help="output file (default: stdout)")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", help="translate a test set and score it with sacreBLEU (BLEU, chrF, TER)")
    _add_decode_options(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--split", help="train, valid, test, or a split name of the data directory")
    group.add_argument("--src", help="source file (with --ref)")
    p.add_argument("--ref", help="reference file (with --src)")
    p.add_argument("--lowercase", action="store_true", help="case-insensitive scores")
    p.add_argument("--json", help="write scores, signatures, hypotheses and their scores to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("average", help="average the last N checkpoints of a run into a model bundle")
    p.add_argument("--model", required=True, help="run directory trained with train.keep_checkpoints >= N")
    p.add_argument("--last", type=positive_int, required=True, help="how many of the newest checkpoints to average")
    p.add_argument("--output", help="bundle directory to write (default: RUN_DIR/averaged_last_N)")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("serve", help="serve a trained model over HTTP (LitServe)")
    if command in (None, "serve"):
        from serve import options as serve_options

        serve_options.add_arguments(p)
        p.set_defaults(func=serve_options.run_from_args)

    p = sub.add_parser("bench", help="benchmarks (serve: load-test a running server)")
    if command in (None, "bench"):
        from nmt import bench

        bench.add_arguments(p)
    return parser


def _command(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first argument not starting with '-'), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def cmd_train(args: argparse.Namespace) -> int:
    from nmt.config import load_config
    from nmt.training import train

    if args.config is None:
        if not (args.resume and args.output_dir):
            raise NMTError("train needs --config (or --resume with --output-dir)")
        args.config = str(Path(args.output_dir) / "config.yaml")
    config = load_config(args.config, args.set)
    run_dir = Path(args.output_dir) if args.output_dir else Path("runs") / Path(args.config).stem
    state = train(config, run_dir, resume=args.resume, show_progress=not args.quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun the main process speaks for all
        print(
            f"{state.stop_reason}; best validation BLEU {state.best_bleu:.2f} at step {state.best_step}; "
            f"model in {run_dir}"
        )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from nmt.config import load_config
    from nmt.token_cache import cache_root
    from nmt.training import prepare_data

    def log(message: str) -> None:
        if not args.quiet:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)

    config = load_config(args.config, args.set)
    start = time.perf_counter()
    data = prepare_data(config, log)
    if os.environ.get("RANK", "0") == "0":
        print(
            f"prepared {len(data.train):,} training pairs ({len(data.train_indices):,} within the length limits) "
            f"and {len(data.valid):,} validation pairs in {time.perf_counter() - start:.1f} s; caches in "
            f"{cache_root().parent}"
        )
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from nmt.averaging import average_run
    from nmt.checkpoint import snapshots

    out = average_run(args.model, args.last, args.output)
    steps = [step for step, _ in snapshots(Path(args.model))[-args.last :]]
    print(f"averaged the checkpoints of steps {', '.join(map(str, steps))}; model in {out}")
    return 0


def _translator(args: argparse.Namespace):
    import torch

    from nmt.prediction import Translator

    if args.threads:
        torch.set_num_threads(args.threads)
    return Translator.from_run_dirs(args.model, device=args.device, dtype=args.dtype)


def _input_chunks(stream: IO[bytes], size: int, name: str) -> Iterator[list[str]]:
    chunk: list[str] = []
    for number, raw in enumerate(stream, start=1):
        try:
            chunk.append(raw.decode("utf-8").rstrip("\n").rstrip("\r"))
        except UnicodeDecodeError:
            raise NMTError(f"{name}: line {number} is not valid UTF-8") from None
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cmd_translate(args: argparse.Namespace) -> int:
    try:
        source = open(args.input, "rb") if args.input else sys.stdin.buffer  # noqa: SIM115
    except OSError as e:
        raise NMTError(f"cannot read {args.input}: {e.strerror}") from None
    translator = _translator(args)
    beam, _ = translator.search_options(args.beam_size, None)  # the batch size depends on the beam only
    batch = args.batch_size or translator.config.decode.sentences_per_batch(beam)
    try:
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    except OSError as e:
        raise NMTError(f"cannot write {args.output}: {e.strerror}") from None
    try:
        index = 0
        for chunk in _input_chunks(source, max(batch * 8, 256), args.input or "stdin"):
            results = translator.translate(
                chunk, args.beam_size, args.n_best, args.max_length, batch, length_penalty=args.length_penalty
            )
            for hyps in results:
                if args.n_best == 1:
                    out.write(hyps[0].text + "\n")
                else:
                    out.writelines(f"{index} ||| {h.text} ||| {h.score:.4f}\n" for h in hyps)
                index += 1
            out.flush()
    finally:
        if args.input:
            source.close()
        if args.output:
            out.close()
    return 0


def _evaluation_data(args: argparse.Namespace, translator) -> tuple[list[str], list[str], str]:
    from nmt.data import load_split, read_lines

    if args.split:
        data = translator.config.data
        name = getattr(data, SPLIT_ROLES[args.split]) if args.split in SPLIT_ROLES else args.split
        ds = load_split(data, name)
        return list(ds["src"]), list(ds["tgt"]), name
    if not args.ref:
        raise NMTError("--src needs --ref")
    src, ref = read_lines(args.src), read_lines(args.ref)
    if len(src) != len(ref):
        raise NMTError(f"line-count mismatch: {args.src} has {len(src)} lines, {args.ref} has {len(ref)}")
    return src, ref, args.src


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nmt.evaluation import corpus_scores

    translator = _translator(args)
    sources, references, name = _evaluation_data(args, translator)
    beam, length_penalty = translator.search_options(args.beam_size, args.length_penalty)
    start = time.perf_counter()
    with tqdm(total=len(sources), desc="translating", unit="sent", file=sys.stderr, mininterval=1.0) as bar:
        results = translator.translate(
            sources, beam, batch_size=args.batch_size, progress=bar.update, length_penalty=length_penalty
        )
    seconds = time.perf_counter() - start
    hypotheses = [r[0].text for r in results]
    scores = corpus_scores(hypotheses, references, lowercase=args.lowercase)
    print(f"{name}: {len(sources)} sentences, beam {beam}, {seconds:.1f} s, {translator.precision}")
    for metric in scores.values():
        print(metric["text"])
        print(f"  signature: {metric['signature']}")
    if args.json:
        from nmt.files import atomic_write_json

        report = {
            "model": args.model[0] if len(args.model) == 1 else args.model,
            "data": name,
            "beam_size": beam,
            "dtype": translator.dtype,
            "length_penalty": length_penalty,
            "sentences": len(sources),
            "seconds": round(seconds, 2),
            **{k: {"score": v["score"], "signature": v["signature"]} for k, v in scores.items()},
            "hypotheses": hypotheses,
            "scores": [r[0].score for r in results],
        }
        atomic_write_json(args.json, report)
    return 0


# Commands that start no processes and write no logs: once their output is flushed they end the process without
# Python's teardown of the interpreter and torch (about 0.3 s of every run: docs/performance.md, "Start-up").
QUICK_EXIT = ("translate", "evaluate")


def run() -> None:
    """The `nmt` console command: `main`, then a quick exit for the QUICK_EXIT commands."""
    code = main()
    if _command(sys.argv[1:]) not in QUICK_EXIT:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass  # the reader left (`| head`), or `main` closed the stream after that: not an error
        except OSError as e:  # a full disk, say: what the interpreter's own flush at exit would report
            print(f"nmt: error: cannot write the output: {e.strerror}", file=sys.__stderr__)
            code = code or 1
    os._exit(code)


def shares_cores(args: argparse.Namespace) -> bool:
    """Whether this command runs next to other computing processes of its own: torchrun's workers on this machine,
    or the server's inference workers."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1 or getattr(args, "workers", 1) > 1


def main(argv: list[str] | None = None) -> int:
    mkl_defaults()
    malloc_defaults()
    bound_onednn_caches()  # before any oneDNN primitive, in this process and in the servers' workers it starts
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)  # imports no torch, so OpenMP's setting can still follow the arguments
    openmp_defaults(shares_cores=shares_cores(args))
    try:
        return int(args.func(args) or 0)
    except NMTError as e:
        print(f"nmt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nmt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
