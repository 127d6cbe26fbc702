"""Render the Helm chart offline (helm-python-sdk: Helm's own Go code, no binary, no cluster) and
validate what it renders: core kinds with kubernetes-validate, prometheus-operator kinds with the
vendored strict schemas in tests/schemas/prometheus-operator/."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import yaml

from tests.conftest import REPO

CHART = REPO / "helm" / "gpu-inference-exporter"
VALUE_SETS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*.yaml"))
OPERATOR_SCHEMAS = REPO / "tests" / "schemas" / "prometheus-operator"
OPERATOR_GROUP = "monitoring.coreos.com/"
RELEASE = "gie"
NAMESPACE = "monitoring"

#: The oldest and newest Kubernetes versions the chart claims (Chart.yaml's kubeVersion, and
#: the newest kubernetes-validate knows).
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")

Manifest = dict[str, Any]


def value_set(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) or {}


def render_files(values: dict[str, Any], chart: Path = CHART) -> dict[str, str]:
    """Template path (relative to templates/) → rendered text."""
    out = helm_python.Chart.load(chart).render(values, name=RELEASE, namespace=NAMESPACE)
    return {path.split("/templates/", 1)[1]: text for path, text in out.items()}


def render(values: dict[str, Any], chart: Path = CHART) -> list[Manifest]:
    """Every manifest the chart renders for `values` (NOTES.txt left out)."""
    docs: list[Manifest] = []
    for path, text in render_files(values, chart).items():
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@cache
def render_value_set(name: str) -> tuple[Manifest, ...]:
    return tuple(render(value_set(name)))


def of_kind(docs: list[Manifest] | tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[Manifest] | tuple[Manifest, ...], kind: str) -> Manifest:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@cache
def operator_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads((OPERATOR_SCHEMAS / f"{kind}.json").read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def operator_errors(doc: Manifest) -> list[str]:
    """What the prometheus-operator CRD schema of `doc`'s kind refuses in it."""
    errors = operator_validator(doc["kind"]).iter_errors(doc)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def exporter_container(docs: list[Manifest] | tuple[Manifest, ...]) -> Manifest:
    ds = one(docs, "DaemonSet")
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    return container


def env(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def validate_engine_pod(engine: Manifest, exporter: Manifest, volumes: list[Manifest]) -> None:
    """A user's vLLM pod with the exporter beside it, valid for each Kubernetes the chart claims."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "vllm-0", "labels": {"app.kubernetes.io/name": "vllm"}},
        "spec": {"containers": [engine, exporter], "volumes": volumes},
    }
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
