"""Constant labels added to every series: `--label KEY=VALUE` and the Kubernetes Downward API."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from exporter.catalog import FAMILIES
from exporter.samples import Labels

#: Downward API environment variables and the label each becomes.
DOWNWARD_API_LABELS: dict[str, str] = {
    "NODE_NAME": "node",
    "POD_NAMESPACE": "namespace",
    "POD_NAME": "pod",
}

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def reserved_label_names() -> set[str]:
    """Label names the catalog uses (a constant label may not shadow them), plus `le`."""
    names = {"le", "quantile"}
    for fam in FAMILIES.values():
        names.update(fam.labels)
    return names


def parse_label(text: str) -> tuple[str, str]:
    """Parse `KEY=VALUE`, raising ValueError with what is wrong."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    if not _LABEL_NAME.match(key) or key.startswith("__"):
        raise ValueError(
            f"{key!r} is not a valid Prometheus label name "
            "(letters, digits and _, not starting with a digit or __)"
        )
    if key in reserved_label_names():
        raise ValueError(f"label {key!r} is used by the exporter's own series; pick another name")
    return key, value


def constant_labels(flags: Sequence[tuple[str, str]], environ: Mapping[str, str]) -> Labels:
    """Downward API labels from `environ`, overridden by explicit flags; sorted by name."""
    labels: dict[str, str] = {}
    for env, label in DOWNWARD_API_LABELS.items():
        if environ.get(env):
            labels[label] = environ[env]
    for key, value in flags:
        labels[key] = value
    return tuple(sorted(labels.items()))
