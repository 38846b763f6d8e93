"""LitServer set-up and lifecycle of `nmt serve` (imported only when the server runs: litserve, torch)."""

import argparse
import logging
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import Depends
from fastapi.exceptions import RequestValidationError
from litserve.callbacks.base import EventTypes

from nmt import __version__
from nmt.bench.common import machine_info
from nmt.bundle import WEIGHTS_FILE, read_metadata, read_run_config
from nmt.config import Config
from nmt.errors import NMTError
from serve.api import TranslationAPI
from serve.deadline import DeadlineRequestHandler
from serve.http import (
    OPEN_PATHS,
    AccessLogMiddleware,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    document_api,
    internal_error_handler,
    validation_error_handler,
)
from serve.jsonbody import StrictJSONRoute
from serve.logs import LOGGER, configure_logging
from serve.metrics import MetricsMiddleware, add_metrics_route
from serve.quota import QuotaExceeded, Windows, keys_middleware, quota_exceeded_handler, reload_on_sighup
from serve.schema import Limits, set_limits
from serve.webpage import WEB_PAGE_PATHS, add_web_page

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


class TranslationServer(ls.LitServer):
    """LitServer with strict JSON bodies, a time limit on the whole request (serve.deadline), and no worker
    restarts once shutdown has begun. Overrides two LitServe 0.2.19 internals (the version is pinned)."""

    stopping = False

    def register_endpoints(self) -> None:
        self.app.router.route_class = StrictJSONRoute  # every route added from here on parses JSON strictly
        super().register_endpoints()

    def _register_api_endpoints(self, lit_api: ls.LitAPI, request_type: type, response_type: type) -> None:
        """LitServe's own, less specs and streaming (unused here), with `DeadlineRequestHandler`."""
        self._callback_runner.trigger_event(EventTypes.ON_SERVER_START.value, litserver=self)
        handler = DeadlineRequestHandler(lit_api, self)

        async def endpoint_handler(request: request_type) -> response_type:
            return await handler.handle_request(request, request_type)

        self.app.add_api_route(
            lit_api.api_path, endpoint_handler, methods=["POST"], dependencies=[Depends(self.setup_auth(lit_api))]
        )

    def launch_single_inference_worker(self, lit_api: ls.LitAPI, worker_id: int):
        if self.stopping:  # LitServe's monitor thread would otherwise respawn the workers it is stopping
            return self.inference_workers[worker_id]
        return super().launch_single_inference_worker(lit_api, worker_id)


def model_info(model_dir: Path, config: Config, args: argparse.Namespace, limits: Limits) -> dict[str, Any]:
    """What GET /info reports under "model": metadata.json (whitelisted), limits, decoding and runtime."""
    meta = read_metadata(model_dir)
    info = {key: meta.get(key) for key in METADATA_KEYS}
    info["decode"] = {"beam_size": config.decode.beam_size, "length_penalty": config.decode.length_penalty}
    info["limits"] = {**limits.to_dict(), "max_body_bytes": args.max_body_bytes}
    info["runtime"] = {
        **machine_info(threads=args.threads),
        "device": args.device,
        "workers": args.workers,
        "threads_per_worker": args.threads,
        "max_batch_size": args.max_batch_size,
        "batch_timeout": args.batch_timeout,
        "quantize": args.quantize,
    }
    return info


def request_limits(config: Config, args: argparse.Namespace) -> Limits:
    decode = config.decode
    max_beam = args.max_beam_size or decode.max_beam_size
    if decode.beam_size > max_beam:
        raise NMTError(f"--max-beam-size {max_beam} is below the model's default beam size {decode.beam_size}")
    return Limits(args.max_chars, args.max_texts, max_beam, decode.beam_size)


def build_server(args: argparse.Namespace) -> TranslationServer:
    """The LitServer for `args` (see serve.app); reads the model's config and metadata, loads no weights."""
    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise NMTError(f"model directory not found: {model_dir}")
    config = read_run_config(model_dir)
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise NMTError(f"no trained weights in {model_dir} (missing {WEIGHTS_FILE})")
    limits = request_limits(config, args)
    set_limits(limits)  # before run(): the HTTP processes are forked from this one
    api = TranslationAPI(
        str(model_dir.resolve()),
        threads=args.threads,
        quantize=args.quantize,
        api_key=args.api_key,
        log_level=args.log_level,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        cache_entries=args.cache_size,
        cache_bytes=args.cache_bytes,
    )
    # the last middleware is the outermost: count and log everything, then check the key, then the body size
    middlewares: list = [(BodyLimitMiddleware, {"max_bytes": args.max_body_bytes})]
    open_paths = OPEN_PATHS | WEB_PAGE_PATHS | ({"/metrics"} if args.metrics_open else set())
    args.quota_store = None
    if args.key_list is not None:
        args.quota_store, middleware = keys_middleware(args.key_list, Windows(*args.quota_windows), open_paths)
        middlewares.append(middleware)
    elif args.api_key is not None:
        middlewares.append((ApiKeyMiddleware, {"api_key": args.api_key, "open_paths": open_paths}))
    middlewares.append((AccessLogMiddleware, {"log_text": args.log_text}))
    middlewares.append((MetricsMiddleware, {}))
    server = TranslationServer(
        api,
        accelerator=args.device,
        workers_per_device=args.workers,
        timeout=args.timeout,
        model_metadata=model_info(model_dir, config, args, limits),
        middlewares=middlewares,
        restart_workers=True,
    )
    server.app.add_exception_handler(RequestValidationError, validation_error_handler)
    server.app.add_exception_handler(QuotaExceeded, quota_exceeded_handler)
    server.app.add_exception_handler(Exception, internal_error_handler)
    add_web_page(server.app)
    add_metrics_route(server.app)
    document_api(server.app, __version__)
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
    _install_signal_handlers(server)
    if args.quota_store is not None:
        reload_on_sighup(args.quota_store, args.keys)
    logger.info(
        "serving %s on http://%s:%d: %d worker(s) x %d thread(s), max batch %d, batch timeout %g s, API key %s",
        args.model,
        args.host,
        args.port,
        args.workers,
        args.threads,
        args.max_batch_size,
        args.batch_timeout,
        "required" if args.api_key else "not required",
    )
    try:
        server.run(
            host=args.host,
            port=args.port,
            # LitServe's debug lines print request bodies: texts are logged only with --log-text
            log_level="info" if args.log_level == "debug" else args.log_level,
            generate_client_file=False,
            access_log=False,  # serve.http.AccessLogMiddleware logs each request
            limit_concurrency=args.max_concurrency,
        )
    except RuntimeError as e:  # LitServe: "One or more workers failed to start"
        raise NMTError(f"the server did not start: {e} (see the worker's message above)") from None
    finally:
        server.stopping = True
        _stop_children()
        if args.quota_store is not None:
            args.quota_store.remove()
    return 0
