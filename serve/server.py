"""Set-up and lifecycle of `nmt serve`: the models, the LitServer, signals (imported only when the server runs)."""

import argparse
import hashlib
import logging
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nmt import __version__
from nmt.bundle import CONFIG_FILE, WEIGHTS_FILE, check_ensemble, read_metadata, read_run_config
from nmt.config import Config
from nmt.errors import NMTError
from nmt.machine import machine_info
from serve.auth import SingleKey
from serve.file_routes import FORM_OVERHEAD
from serve.filestore import FileStore
from serve.jsonbody import StrictJSONRoute
from serve.litserve_glue import TranslationServer
from serve.logs import LOGGER, configure_logging
from serve.metrics import MetricsMiddleware, add_metrics_route
from serve.middleware import (
    OPEN_PATHS,
    AccessLogMiddleware,
    BodyLimitMiddleware,
    DrainMiddleware,
    KeyMiddleware,
    http_error_handler,
    internal_error_handler,
    quota_exceeded_handler,
    validation_error_handler,
)
from serve.openapi import document_api
from serve.quota import (
    QuotaExceeded,
    QuotaStore,
    SharedQuotaStore,
    Windows,
    charging_characters,
    reload_on_sighup,
)
from serve.redisconn import redacted
from serve.routes import register_routes
from serve.schema import Limits, set_limits
from serve.service import Model, Service
from serve.suggestions import SuggestionStore
from serve.webpage import WebPageMiddleware
from serve.worker import TranslationAPI

logger = logging.getLogger(LOGGER)

METADATA_KEYS = (
    "name",
    "src_lang",
    "tgt_lang",
    "architecture",
    "src_vocab_size",
    "tgt_vocab_size",
    "parameters",
    "best_valid_bleu",
    "best_step",
    "nmt_version",
    "format_version",
)


def model_members(values: list[str]) -> list[tuple[Path, ...]]:
    """The models given with --model, each as its member run directories: a value is a run directory, a directory
    of run directories (one model each), or run directories joined by commas (one ensemble)."""
    found: list[tuple[Path, ...]] = []
    for value in values:
        if "," in value:
            members = tuple(Path(part) for part in value.split(","))
            for member in members:
                if not (member / CONFIG_FILE).is_file():
                    raise NMTError(f"ensemble member {str(member)!r} in --model {value} is not a run directory")
            check_ensemble(list(members))
            found.append(members)
            continue
        path = Path(value)
        if not path.is_dir():
            raise NMTError(f"model directory not found: {path}")
        if (path / CONFIG_FILE).is_file():
            found.append((path,))
            continue
        inner = sorted(p for p in path.iterdir() if (p / CONFIG_FILE).is_file())
        if not inner:
            raise NMTError(f"{path} is neither a run directory (no {CONFIG_FILE}) nor a directory of run directories")
        found += [(p,) for p in inner]
    return found


def load_model(members: tuple[Path, ...], config: Config, max_beam: int) -> Model:
    """A served model (or ensemble) from its run directories' metadata and the first member's `config`, which
    decides the pair, the name and the decode settings (no weights are loaded here)."""
    for run_dir in members:
        if not (run_dir / WEIGHTS_FILE).is_file():
            raise NMTError(f"no trained weights in {run_dir} (missing {WEIGHTS_FILE})")
    run_dir = members[0]
    if config.decode.beam_size > max_beam:
        raise NMTError(f"--max-beam-size {max_beam} is below the beam size {config.decode.beam_size} of {run_dir}")
    meta = read_metadata(run_dir)
    info = {key: meta.get(key) for key in METADATA_KEYS}
    src, tgt = meta.get("src_lang") or config.data.src_lang, meta.get("tgt_lang") or config.data.tgt_lang
    info.update(src_lang=src, tgt_lang=tgt, pair=f"{src}-{tgt}", run_dir=str(run_dir))
    if len(members) > 1:
        info["ensemble"] = [str(member) for member in members]
    info["decode"] = {"beam_size": config.decode.beam_size, "length_penalty": config.decode.length_penalty}
    name = str(meta.get("name") or config.name or run_dir.name)
    return Model(name, src, tgt, tuple(str(m.resolve()) for m in members), config.decode.beam_size, info)


def load_models(args: argparse.Namespace) -> tuple[dict[str, Model], int]:
    """The served models by pair (two models for one pair are an error), and the largest beam a request may ask."""
    members = model_members(args.model)
    configs = {path: read_run_config(path) for group in members for path in group}
    max_beam = args.max_beam_size or min(config.decode.max_beam_size for config in configs.values())
    models: dict[str, Model] = {}
    for group in members:
        model = load_model(group, configs[group[0]], max_beam)
        if model.pair in models:
            raise NMTError(f"two models for {model.pair}: {models[model.pair].where} and {model.where}")
        models[model.pair] = model
    return models, max_beam


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(model: Model) -> str:
    """What the shared translation cache keys a model by, besides the search precision (added by the worker): its
    pair, the SHA-256 of every member's weights and its length penalty. Replicas serving the same weights share
    entries; a retrained model (new weights) never reads an old one's."""
    weights = ",".join(file_sha256(Path(member) / WEIGHTS_FILE) for member in model.run_dirs)
    return f"{model.pair}|{weights}|lp={model.info['decode']['length_penalty']!r}"


def check_redis(url: str, timeout: float) -> None:
    """Log whether Redis answers at start (the server starts either way and keeps trying: serve.redisconn)."""
    import redis

    from serve.redisconn import client_options

    try:
        redis.Redis.from_url(url, **client_options(max(timeout, 1.0))).ping()
    except Exception as e:  # redis-py's ConnectionError, TimeoutError, an OSError
        logger.warning(
            "Redis at %s does not answer (%s); starting without it, trying again per request", redacted(url), e
        )
    else:
        logger.info("Redis at %s answers: quotas and the translation cache are shared through it", redacted(url))


def runtime_info(args: argparse.Namespace) -> dict[str, Any]:
    return {
        **machine_info(threads=args.threads),
        "device": args.device,
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "max_batch_size": args.max_batch_size,
        "batch_timeout": args.batch_timeout,
        "dtype": args.dtype,
    }


def build_server(args: argparse.Namespace) -> TranslationServer:
    """The LitServer for `args` (see serve.options); reads the models' configs and metadata, loads no weights."""
    models, max_beam = load_models(args)
    limits = Limits(
        max_chars=args.max_chars,
        max_texts=args.max_texts,
        max_sentence_chars=args.max_sentence_chars,
        max_beam_size=max_beam,
        max_body_bytes=args.max_body_bytes,
        timeout=args.timeout,
        max_concurrency=args.max_concurrency,
    )
    set_limits(limits)  # before run(): the HTTP processes are forked from this one
    runtime = runtime_info(args)
    for model in models.values():
        model.info["runtime"] = runtime
        model.info["limits"] = limits.to_dict()
    args.quota_store = None
    if args.key_list is not None and args.redis:
        keys = args.quota_store = SharedQuotaStore.create(
            args.key_list, Windows(*args.quota_windows), args.redis, args.redis_fail, args.redis_timeout
        )
    elif args.key_list is not None:
        keys = args.quota_store = QuotaStore.create(args.key_list, Windows(*args.quota_windows))
    else:
        keys = None if args.api_key is None else SingleKey(args.api_key)
    try:
        suggestions = None if args.suggestions is None else SuggestionStore(args.suggestions)
    except OSError as e:
        raise NMTError(f"--suggestions {args.suggestions}: {e.strerror or e}") from None
    try:  # file translation (serve.file_routes): where translated files wait to be downloaded
        files = FileStore(args.files_dir, args.file_ttl, args.max_file_bytes)
    except OSError as e:
        raise NMTError(f"--files-dir {args.files_dir}: {e.strerror or e}") from None
    service = Service(models, limits, keys=keys, suggestions=suggestions, files=files)
    service.detector.load()
    api = TranslationAPI(
        {pair: model.run_dirs for pair, model in models.items()},
        threads=args.threads,
        dtype=args.dtype,
        log_level=args.log_level,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        cache_entries=args.cache_size,
        cache_bytes=args.cache_bytes,
        redis_url=args.redis,
        cache_ttl=args.cache_ttl,
        redis_timeout=args.redis_timeout,
        model_ids={pair: model_identity(model) for pair, model in models.items()} if args.redis else None,
    )
    # the last middleware is the outermost: count and log everything, serve the web page (no key), then check the
    # key (and the requests per minute of --keys), then the body size
    draining = multiprocessing.Value("b", 0, lock=False)  # set on SIGTERM, read by every HTTP process
    middlewares: list = [
        (
            BodyLimitMiddleware,
            {"max_bytes": args.max_body_bytes, "paths": {"/translate_file": args.max_file_bytes + FORM_OVERHEAD}},
        ),
        (DrainMiddleware, {"draining": draining}),
    ]
    open_paths = OPEN_PATHS | ({"/metrics"} if args.metrics_open else set())
    open_paths |= {"/health"} if args.health_open else set()
    if keys is not None:
        middlewares.append((KeyMiddleware, {"keys": keys, "open_paths": open_paths}))
    middlewares.append((WebPageMiddleware, {}))
    middlewares.append((AccessLogMiddleware, {"log_text": args.log_text}))
    middlewares.append((MetricsMiddleware, {}))

    def register(app, submit) -> None:
        service.submit = charging_characters(submit)  # --keys: a key's characters per day, before queueing
        app.router.route_class = StrictJSONRoute  # every route added from here on parses JSON strictly
        register_routes(app, service, lambda: server.workers_ready())

    server = TranslationServer(
        api,
        register,
        accelerator=args.device,
        workers_per_device=args.workers,
        timeout=args.timeout,
        middlewares=middlewares,
        restart_workers=True,
        drain_timeout=args.drain_timeout,
        drain_delay=args.drain_delay,
        draining=draining,
    )
    server.app.add_exception_handler(RequestValidationError, validation_error_handler)
    server.app.add_exception_handler(QuotaExceeded, quota_exceeded_handler)
    server.app.add_exception_handler(StarletteHTTPException, http_error_handler)
    server.app.add_exception_handler(Exception, internal_error_handler)
    add_metrics_route(server.app)
    document_api(server.app, __version__, service, open_paths)
    return server


def _install_signal_handlers(server: TranslationServer) -> None:
    """SIGTERM and SIGINT both stop the server the way LitServe handles Ctrl+C (KeyboardInterrupt)."""
    main_pid = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a forked HTTP process re-raising the signal after uvicorn's shutdown
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        server.stopping = True
        server.draining.value = 1  # /health 503 at once; serve.litserve_glue drains before stopping
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _stop_children(timeout: float = 3.0) -> None:
    """Terminate (then kill) any process this server started that is still alive, e.g. after a second Ctrl+C."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join(1)


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT or SIGTERM; 0 after a clean shutdown."""
    configure_logging(args.log_level)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if args.workers * args.threads > cores:
        logger.warning(
            "%d worker(s) x %d thread(s) on %d cores: oversubscribed, expect much slower searches",
            args.workers,
            args.threads,
            cores,
        )
    server = build_server(args)
    if args.redis:
        check_redis(args.redis, args.redis_timeout)
    _install_signal_handlers(server)
    if args.quota_store is not None:
        reload_on_sighup(args.quota_store, args.keys)
    logger.info(
        "serving %s on http://%s:%d: %d worker(s) x %d thread(s), max batch %d, batch timeout %g s, API key %s",
        ", ".join(args.model),
        args.host,
        args.port,
        args.workers,
        args.threads,
        args.max_batch_size,
        args.batch_timeout,
        "from " + args.keys if args.keys else "required" if args.api_key else "not required",
    )
    if args.threads > 1:
        logger.info(
            "with %d threads per worker a sentence's score can differ in its last digits with the requests batched "
            "with it; --threads 1 keeps answers batch-invariant (docs/operations.md, translation cache)",
            args.threads,
        )
    try:
        server.run(
            host=args.host,
            port=args.port,
            # LitServe's debug lines print request bodies: texts are logged only with --log-text
            log_level="info" if args.log_level == "debug" else args.log_level,
            generate_client_file=False,
            access_log=False,  # serve.middleware.AccessLogMiddleware logs each request
            limit_concurrency=args.max_concurrency,
            http=args.http,
        )
    except RuntimeError as e:  # LitServe: "One or more workers failed to start"
        raise NMTError(f"the server did not start: {e} (see the worker's message above)") from None
    finally:
        server.stopping = True
        _stop_children()
        if args.quota_store is not None:
            args.quota_store.remove()
    return 0
