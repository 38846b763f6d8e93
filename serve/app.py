"""`nmt serve`: command-line options and entry point. Cheap to import (no torch, no litserve): the `nmt` parser
imports it; the server itself lives in serve.server and serve.api and is imported only when it runs."""

import argparse
import os

from nmt.errors import NMTError

API_KEY_ENV = "NMT_API_KEY"
PORT_ENV = "NMT_PORT"  # also read by the Docker HEALTHCHECK


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{value}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{value}'") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return x


def _non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got '{value}'") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {n}")
    return n


def _windows(value: str) -> tuple[float, float]:
    """MINUTE,DAY: the lengths in seconds of the quota windows (shortened in tests)."""
    try:
        minute, day = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers of seconds, MINUTE,DAY, got '{value}'") from None
    if not (minute > 0 and day > 0):
        raise argparse.ArgumentTypeError("the quota windows must be positive")
    return minute, day


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `nmt serve`."""
    parser.add_argument("--model", required=True, help="run directory of a trained model")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        choices=["127.0.0.1", "0.0.0.0", "::"],
        help="interface to listen on (default: 127.0.0.1; 0.0.0.0 in Docker)",
    )
    parser.add_argument("--port", type=int, help=f"TCP port, 1024-65535 (default: ${PORT_ENV} or 8000)")
    parser.add_argument("--workers", type=_positive_int, default=1, help="inference processes (default: 1)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch threads per worker (default: 1; scale with --workers, see the README's Serving section)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="default: cpu")
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization (CPU)")
    group = parser.add_argument_group("batching")
    group.add_argument(
        "--max-batch-size", type=_positive_int, default=16, help="requests gathered into one search (default: 16)"
    )
    group.add_argument(
        "--batch-timeout",
        type=_positive_float,
        default=0.01,
        help="seconds to wait for a batch to fill (default: 0.01; a lone request waits this long)",
    )
    group = parser.add_argument_group("limits")
    group.add_argument("--max-chars", type=_positive_int, default=1000, help="characters per text (default: 1000)")
    group.add_argument("--max-texts", type=_positive_int, default=64, help="texts per request (default: 64)")
    group.add_argument(
        "--max-beam-size", type=_positive_int, help="largest beam a request may ask for (default: the config's)"
    )
    group.add_argument(
        "--max-body-bytes", type=_positive_int, default=1 << 20, help="request body size (default: 1 MiB)"
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        help="seconds from queueing a request to its answer, queue wait and translation; 504 after (default: 30)",
    )
    group.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=256,
        help="open connections and requests per HTTP process before 503 (default: 256)",
    )
    group = parser.add_argument_group("security and logging")
    group.add_argument(
        "--api-key", help=f"require this key in the X-API-Key header (default: ${API_KEY_ENV}; prefer the variable)"
    )
    group.add_argument(
        "--keys",
        metavar="FILE",
        help="API keys, one per line with optional limits: KEY [requests_per_minute=N] [characters_per_day=N]; "
        "reloaded on SIGHUP (see docs/operations.md)",
    )
    group.add_argument(
        "--metrics-open", action="store_true", help="serve /metrics without an API key (a scraper on a private network)"
    )
    group.add_argument("--quota-windows", type=_windows, default=(60.0, 86400.0), help=argparse.SUPPRESS)  # tests
    group.add_argument("--log-text", action="store_true", help="also log request and response bodies (the texts)")
    group.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    group = parser.add_argument_group("translation cache (per worker)")
    group.add_argument(
        "--cache-size",
        type=_non_negative_int,
        default=10000,
        help="sentences kept per worker, least recently used dropped first; 0 turns the cache off (default: 10000)",
    )
    group.add_argument(
        "--cache-bytes",
        type=_positive_int,
        default=64 << 20,
        help="approximate memory of the cache per worker (default: 64 MiB)",
    )


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in defaults that depend on the environment and check option combinations (NMTError)."""
    from serve.auth import check_key

    if args.port is None:
        try:
            args.port = int(os.environ.get(PORT_ENV, "8000"))
        except ValueError:
            raise NMTError(f"${PORT_ENV} must be a port number, got '{os.environ[PORT_ENV]}'") from None
    if not 1024 <= args.port <= 65535:
        raise NMTError(f"--port must be from 1024 to 65535, got {args.port}")
    if args.batch_timeout >= args.timeout:
        raise NMTError("--batch-timeout must be smaller than --timeout")
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    try:
        args.api_key = None if key is None else check_key(key)
    except ValueError as e:
        raise NMTError(str(e)) from None
    args.key_list = None
    if args.keys is not None:
        from serve.keys import KeysFileError, read_keys_file

        if args.api_key is not None:
            raise NMTError(
                f"--keys and an API key (--api-key or ${API_KEY_ENV}) both given: put that key in the keys file"
            )
        try:
            args.key_list = read_keys_file(args.keys)
        except KeysFileError as e:
            raise NMTError(str(e)) from None
    if args.metrics_open and args.api_key is None and args.keys is None:
        args.metrics_open = False  # nothing to open: every route is open already
    return args


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of `nmt serve`."""
    from serve.metricsdir import multiprocess_dir

    args = resolve_options(args)
    with multiprocess_dir():  # before serve.server imports prometheus_client
        from serve.server import serve

        return serve(args)
