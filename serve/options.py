"""`nmt serve`: command-line options and entry point. Cheap to import (no torch, no litserve): the `nmt` parser
imports it; the server itself lives in serve.server and serve.worker and is imported only when it runs."""

import argparse
import os

from nmt.cli_types import API_KEY_ENV, PORT_ENV, non_negative_int, positive_float, positive_int
from nmt.errors import NMTError
from nmt.precision import add_dtype_argument
from serve.schema import Limits

LIMITS = Limits()  # the defaults of the limit options (serve.schema.Limits is their one home)


def non_negative_float(value: str) -> float:
    """A number of seconds >= 0 (argparse type)."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got '{value}'") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return x


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
    parser.add_argument(
        "--model",
        required=True,
        action="append",
        help="run directory of a trained model, a directory of run directories, or run directories joined by "
        "commas (one ensemble: models of one pair sharing a vocabulary); repeat it to serve several language pairs "
        "(one model or ensemble per pair)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        choices=["127.0.0.1", "0.0.0.0", "::"],
        help="interface to listen on (default: 127.0.0.1; 0.0.0.0 in Docker)",
    )
    parser.add_argument("--port", type=int, help=f"TCP port, 1024-65535 (default: ${PORT_ENV} or 8000)")
    parser.add_argument("--workers", type=positive_int, default=1, help="inference processes (default: 1)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads per worker (default: 1; scale with --workers, see the README's Serving section)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="default: cpu")
    parser.add_argument(
        "--http",
        default="auto",
        choices=["auto", "h11", "httptools"],
        help="uvicorn's HTTP/1.1 parser (default: auto, httptools where installed); answers are the same with either",
    )
    add_dtype_argument(parser)
    group = parser.add_argument_group("batching")
    group.add_argument(
        "--max-batch-size", type=positive_int, default=16, help="requests gathered into one search (default: 16)"
    )
    group.add_argument(
        "--batch-timeout",
        type=positive_float,
        default=0.01,
        help="seconds to wait for a batch to fill (default: 0.01; a lone request waits this long)",
    )
    group = parser.add_argument_group("limits")
    group.add_argument(
        "--max-chars",
        type=positive_int,
        default=LIMITS.max_chars,
        help=f"characters per text, a document of any number of sentences (default: {LIMITS.max_chars})",
    )
    group.add_argument(
        "--max-texts",
        type=positive_int,
        default=LIMITS.max_texts,
        help=f"texts per request (default: {LIMITS.max_texts})",
    )
    group.add_argument(
        "--max-sentence-chars",
        type=positive_int,
        default=LIMITS.max_sentence_chars,
        help=f"a longer sentence is cut at a clause break or space first (default: {LIMITS.max_sentence_chars})",
    )
    group.add_argument(
        "--max-beam-size", type=positive_int, help="largest beam a request may ask for (default: the config's)"
    )
    group.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=LIMITS.max_body_bytes,
        help=f"request body size (default: {LIMITS.max_body_bytes} bytes)",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=LIMITS.timeout,
        help=f"seconds from queueing a request to its answer, queue wait and translation; 504 after "
        f"(default: {LIMITS.timeout:g})",
    )
    group.add_argument(
        "--max-concurrency",
        type=positive_int,
        default=LIMITS.max_concurrency,
        help=f"open connections and requests per HTTP process before 503 (default: {LIMITS.max_concurrency})",
    )
    group = parser.add_argument_group("security and logging")
    group.add_argument(
        "--api-key",
        help=f"require this key: X-API-Key header on the native routes, api_key parameter on the LibreTranslate "
        f"routes (default: ${API_KEY_ENV}; prefer the variable)",
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
    group.add_argument(
        "--health-open",
        action="store_true",
        help="serve /health without an API key (load balancer and Kubernetes probes)",
    )
    group.add_argument("--quota-windows", type=_windows, default=(60.0, 86400.0), help=argparse.SUPPRESS)  # tests
    group.add_argument(
        "--suggestions",
        metavar="DIR",
        help="accept POST /suggest and append each suggestion to DIR/SOURCE-TARGET/train.jsonl, a corpus nmt train "
        "reads (default: off, as in LibreTranslate)",
    )
    group.add_argument("--log-text", action="store_true", help="also log request and response bodies (the texts)")
    group.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    group = parser.add_argument_group("file translation: POST /translate_file, GET /download_file (LibreTranslate)")
    group.add_argument(
        "--max-file-bytes",
        type=positive_int,
        default=10 << 20,
        help="size of an uploaded file; a larger one is 413 (default: 10485760, 10 MiB); its text is limited by "
        "--max-chars too",
    )
    group.add_argument(
        "--files-dir",
        metavar="DIR",
        help="where translated files wait to be downloaded (a volume every replica shares, in a cluster) (default: "
        "a private temporary directory, removed when the server stops)",
    )
    group.add_argument(
        "--file-ttl",
        type=positive_float,
        default=1800.0,
        help="seconds a translated file can be downloaded before it is deleted (default: 1800, as LibreTranslate)",
    )
    group = parser.add_argument_group("translation cache (per worker)")
    group.add_argument(
        "--cache-size",
        type=non_negative_int,
        default=10000,
        help="sentences kept per worker, least recently used dropped first; 0 turns the cache off (default: 10000)",
    )
    group.add_argument(
        "--cache-bytes",
        type=positive_int,
        default=64 << 20,
        help="approximate memory of the cache per worker (default: 64 MiB)",
    )

    group = parser.add_argument_group("cluster: replicas sharing Redis, behind a load balancer (docs/deployment.md)")
    group.add_argument(
        "--redis",
        metavar="URL",
        help="redis://HOST:PORT/DB shared by every replica: the quotas of --keys and a shared translation cache "
        "(default: none; quotas in a local database, a cache per worker)",
    )
    group.add_argument(
        "--redis-fail",
        default="open",
        choices=["open", "closed"],
        help="quotas while Redis is unreachable: open counts each key on this replica alone (at most its limits "
        "per replica), closed refuses requests of keys with limits (429, Retry-After) (default: open)",
    )
    group.add_argument(
        "--redis-timeout",
        type=positive_float,
        default=0.25,
        help="seconds a Redis command may take, connecting included, before the request goes on without it "
        "(default: 0.25)",
    )
    group.add_argument(
        "--cache-ttl",
        type=non_negative_int,
        default=86400,
        help="seconds an entry stays in the shared cache; 0 turns the shared cache off (default: 86400)",
    )
    group.add_argument(
        "--drain-timeout",
        type=positive_float,
        default=30.0,
        help="on SIGTERM, seconds to finish the requests in flight before stopping (default: 30)",
    )
    group.add_argument(
        "--drain-delay",
        type=non_negative_float,
        default=0.0,
        help="on SIGTERM, seconds to keep accepting requests with /health at 503 first, so that a load balancer "
        "takes the replica out before it closes its port (default: 0)",
    )


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in defaults that depend on the environment and check option combinations (NMTError)."""
    from serve.keys import check_key

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
    if args.redis is not None:
        from serve.redisconn import check_url

        try:
            args.redis = check_url(args.redis)
        except ValueError as e:
            raise NMTError(str(e)) from None
    return args


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of `nmt serve`."""
    from serve.metricsdir import multiprocess_dir

    args = resolve_options(args)
    with multiprocess_dir():  # before serve.server imports prometheus_client
        from serve.server import serve

        return serve(args)
