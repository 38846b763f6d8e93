"""serve/litserve_glue.py overrides LitServe internals of one version: an upgrade must fail here, loudly."""

from __future__ import annotations

import re
from pathlib import Path

import litserve
import pytest
from litserve.loops.simple_loops import BatchedLoop
from litserve.server import LitServer, RegularRequestHandler

from serve.litserve_glue import LITSERVE_VERSION, check_litserve_version

SERVE = Path(__file__).resolve().parent.parent / "serve"
PRIVATE = re.compile(r"\b(_register_api_endpoints|_callback_runner|_SENTINEL_VALUE|_StopLoopError|_submit_request|"
                     r"_handle_error_response|response_buffer|workers_setup_status)\b")  # fmt: skip


def test_installed_litserve_is_the_version_the_overrides_were_written_for():
    assert litserve.__version__ == LITSERVE_VERSION, (
        f"litserve {litserve.__version__} is installed; serve/litserve_glue.py was written against "
        f"{LITSERVE_VERSION}: read its docstring, port each override, then update LITSERVE_VERSION"
    )
    check_litserve_version()


def test_another_version_refuses_to_start():
    with pytest.raises(RuntimeError, match=r"litserve 0\.3\.0 is installed.*litserve==0\.2\.19"):
        check_litserve_version("0.3.0")


def test_the_internals_used_still_exist():
    for owner, name in [
        (RegularRequestHandler, "_submit_request"),
        (RegularRequestHandler, "_handle_error_response"),
        (LitServer, "launch_single_inference_worker"),
        (LitServer, "register_endpoints"),
        (BatchedLoop, "get_batch_requests"),
        (BatchedLoop, "put_response"),
    ]:
        assert callable(getattr(owner, name, None)), f"{owner.__name__}.{name} is gone"
    from litserve.loops.base import _SENTINEL_VALUE, _StopLoopError  # noqa: F401


def test_no_other_module_touches_litserve_internals():
    offenders = [
        f"{path.name}: {match.group(0)}"
        for path in sorted(SERVE.glob("*.py"))
        if path.name != "litserve_glue.py"
        for match in PRIVATE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
