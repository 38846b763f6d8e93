"""The PROMETHEUS_MULTIPROC_DIR of one `nmt serve`: created before prometheus_client is imported, removed at exit.

prometheus_client decides at import whether it records per process into files, so the variable must be set in the
main process before serve.metrics is imported; the forked HTTP processes and the spawned workers inherit it.
Kept free of prometheus_client (and cheap to import) for that reason.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A fresh, empty directory in PROMETHEUS_MULTIPROC_DIR for the life of the server; removed afterwards."""
    if "prometheus_client" in sys.modules:  # it would record per process only: counts that do not add up
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    path = tempfile.mkdtemp(prefix="nmt-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
