"""Logging of the service: one `nmt.serve` logger on stderr, configured in the main process and in each worker."""

import logging
import sys

LOGGER = "nmt.serve"


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"))
    log = logging.getLogger(LOGGER)
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False
