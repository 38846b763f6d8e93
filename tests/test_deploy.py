"""The deployment files under deploy/: the compose file against the Compose Specification's schema (vendored by
check-jsonschema), the Kubernetes manifests against the API's schemas (kubernetes-validate, strict: an unknown
field fails), every `nmt serve` option they pass parsed by `nmt serve`'s own parser, and the HAProxy configuration
checked by haproxy itself where it is installed. tests/test_cluster.py runs the same topology for real."""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from conftest import REPO
from system_programs import program

from serve.options import add_arguments

DEPLOY = REPO / "deploy"
KUBERNETES = "1.30.0"  # the oldest Kubernetes release the manifests are checked against (policy/v1, apps/v1)
IMAGE_ENTRYPOINT = ["--model", "/model", "--host", "0.0.0.0"]  # the Dockerfile's, before the manifests' arguments


def _manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return found


def _serve_options(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    return parser.parse_args(IMAGE_ENTRYPOINT + arguments)


def test_compose_file_follows_the_compose_specification():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_topology():
    """Redis, two or more replicas sharing it with health checks, and a balancer in front."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    replicas = [name for name, service in services.items() if "--health-open" in service.get("command", [])]
    assert len(replicas) >= 2 and "redis" in services and "haproxy" in services
    for name in replicas:
        options = _serve_options(services[name]["command"])
        assert options.redis == "redis://redis:6379/0" and options.keys.startswith("/run/secrets/")
        assert services[name]["healthcheck"]["test"][-1].count("/health") == 1
    assert "allkeys-lru" in services["redis"]["command"]
    haproxy = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
    assert all(f"server {name} {name}:8000" in haproxy for name in replicas)


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=lambda x: x if isinstance(x, str) else x["kind"])
def test_kubernetes_manifests_follow_the_api_schemas(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_a_mistake_in_a_manifest_is_caught():
    deployment = next(
        doc for _, doc in _manifests() if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "nmt-serve"
    )
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_kubernetes_deployment_probes_resources_secret_and_models():
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in _manifests()}
    deployment = docs[("Deployment", "nmt-serve")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    options = _serve_options(container["args"])
    assert options.health_open and options.redis == "redis://nmt-redis:6379/0"
    assert pod["terminationGracePeriodSeconds"] > options.drain_delay + options.drain_timeout
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert volumes["keys"]["secret"]["secretName"] == "nmt-keys" and ("Secret", "nmt-keys") in docs
    assert options.keys.startswith(mounts["keys"] + "/")
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "nmt-models" and mounts["models"] == "/model"
    assert options.files_dir == mounts["files"] and ("PersistentVolumeClaim", "nmt-files") in docs  # any replica
    assert ("Service", "nmt-serve") in docs and ("Service", "nmt-redis") in docs
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_haproxy_accepts_its_configuration():
    haproxy = program("haproxy", "haproxy")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
