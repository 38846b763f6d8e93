"""/openapi.json is the contract: schemathesis generates requests from it (valid ones, and ones that break it) for
every route and holds each answer to it: no 5xx, only documented status codes, the documented content type, a
body that fits the documented schema, and the key enforced where documented. Against the real server with two
models, without and with an API key (the schema differs: the key is documented only when there is one)."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import LT_KEY, LT_OPTIONS
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from server_process import ServerProcess

pytestmark = pytest.mark.slow  # schema-driven requests against a running `nmt serve`

EXAMPLES = 25  # per route and mode: about 300 requests per server, seconds on the tiny models
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _hold_to_the_schema(url: str, headers: dict[str, str], extra_checks: list) -> list[str]:
    seen = []
    for operation in _operations(url):
        seen.append(f"{operation.method.upper()} {operation.path}")
        modes = [GenerationMode.POSITIVE]
        if len(operation.body) or len(operation.query):  # nothing to break in a route without parameters
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:
                case.call_and_validate(base_url=url, headers=headers, checks=CHECKS + extra_checks, timeout=60)

            run()
    return seen


ROUTES = ["GET /", "GET /health", "GET /info", "POST /predict", "POST /translate", "POST /detect", "GET /languages",
          "GET /metrics", "GET /frontend/settings", "POST /suggest", "POST /translate_file",
          "GET /download_file/{name}"]  # fmt: skip


def test_schema_holds_without_a_key(lt_server):
    schema = lt_server.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert sorted(_hold_to_the_schema(lt_server.url, {}, [])) == sorted(ROUTES)


def test_schema_holds_with_a_key(lt_keyed_server):
    schema = lt_keyed_server.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    routes = _hold_to_the_schema(lt_keyed_server.url, {"X-API-Key": LT_KEY}, [checks.ignored_auth])
    assert sorted(routes) == sorted(ROUTES)


@pytest.mark.parametrize("keyed", [False, True])
def test_documented_answers(lt_server, lt_keyed_server, keyed):
    """The mismatches a schema-driven fuzzer found before: each is documented now."""
    server = lt_keyed_server if keyed else lt_server
    paths = server.get("/openapi.json").json()["paths"]
    predict = paths["/predict"]["post"]
    assert {"200", "400", "413", "422", "504"} <= set(predict["responses"])
    assert ("401" in predict["responses"]) == keyed and ("security" in predict) == keyed
    assert all(p.get("in") != "header" for p in predict.get("parameters", []))  # the key is a security scheme
    for path in ("/", "/health"):
        assert "application/json" in paths[path]["get"]["responses"]["200"]["content"]
        assert server.get(path).headers["content-type"].split(";")[0].strip() == "application/json"
    assert ("403" in paths["/translate"]["post"]["responses"]) == keyed
    files = paths["/translate_file"]["post"]
    assert {"200", "400", "403", "413"} <= set(files["responses"])
    assert list(files["requestBody"]["content"]) == ["multipart/form-data"]
    assert {"200", "404"} <= set(paths["/download_file/{name}"]["get"]["responses"])


def test_schema_holds_with_a_keys_file(tiny_run, tiny_run_en_de, tmp_path):
    """`nmt serve --keys FILE` (serve.quota): 401 without a key, 403 for an unknown one, 429 over a limit, each
    documented where it can occur; /metrics open with --metrics-open."""
    (tmp_path / "keys").write_text(f"{LT_KEY}\nlimited requests_per_minute=1000\n", encoding="utf-8")
    options = [*LT_OPTIONS, "--keys", str(tmp_path / "keys"), "--metrics-open"]
    server = ServerProcess([tiny_run, tiny_run_en_de], tmp_path / "server.log", *options)
    server.headers = {"X-API-Key": LT_KEY}
    try:
        server.wait_ready()
        paths = server.get("/openapi.json").json()["paths"]
        predict = paths["/predict"]["post"]["responses"]
        assert {"401", "403", "429"} <= set(predict) and "Retry-After" in predict["429"]["headers"]
        assert {"400", "403", "429"} <= set(paths["/translate"]["post"]["responses"])
        assert "401" not in paths["/metrics"]["get"]["responses"] and "security" not in paths["/metrics"]["get"]
        routes = _hold_to_the_schema(server.url, {"X-API-Key": LT_KEY}, [checks.ignored_auth])
        assert sorted(routes) == sorted(ROUTES)
    finally:
        server.stop()
