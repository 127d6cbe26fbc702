"""Who the series belong to: constant labels (`--label KEY=VALUE`, the node) and the pod.

Every series carries the node (`NODE_NAME` from the Downward API; outside Kubernetes the host
name) and the `--label`s: identity that survives an exporter rollout. The pod's namespace
and name change with every rollout, so they live on one series, `exporter_pod_info`, unless
`--identity.pod-labels` puts them back on every series (what this exporter did before).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping, Sequence

from exporter.catalog import EXPORTER_POD_INFO, FAMILIES
from exporter.samples import Labels, Sample

#: Downward API environment variables and the label each becomes.
DOWNWARD_API_LABELS: dict[str, str] = {
    "NODE_NAME": "node",
    "POD_NAMESPACE": "namespace",
    "POD_NAME": "pod",
}
#: The pod's labels: on exporter_pod_info only, unless asked for on every series.
POD_LABELS = ("namespace", "pod")

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
    if key in reserved_label_names() - set(POD_LABELS):
        raise ValueError(f"label {key!r} is used by the exporter's own series; pick another name")
    return key, value


def constant_labels(
    flags: Sequence[tuple[str, str]],
    environ: Mapping[str, str],
    *,
    pod_labels: bool = False,
    hostname: str | None = None,
) -> Labels:
    """The labels of every series, sorted by name: the node (NODE_NAME; outside Kubernetes
    the host name), the pod's namespace and name only with `pod_labels`, then the flags.

    Raises ValueError when a flag sets the same key twice."""
    labels: dict[str, str] = {}
    for env, label in DOWNWARD_API_LABELS.items():
        if environ.get(env) and (pod_labels or label not in POD_LABELS):
            labels[label] = environ[env]
    if "node" not in labels and not environ.get("KUBERNETES_SERVICE_HOST"):
        labels["node"] = hostname if hostname is not None else socket.gethostname()
    seen: set[str] = set()
    for key, value in flags:
        if key in seen:
            raise ValueError(f"--label {key}= is given twice; give each label once")
        seen.add(key)
        labels[key] = value
    return tuple(sorted((k, v) for k, v in labels.items() if v))


def pod_info(environ: Mapping[str, str], *, pod_labels: bool = False) -> list[Sample]:
    """`exporter_pod_info{namespace, pod} 1` when the Downward API names the pod and its
    labels are not already on every series."""
    namespace, pod = environ.get("POD_NAMESPACE", ""), environ.get("POD_NAME", "")
    if pod_labels or not (namespace or pod):
        return []
    return [EXPORTER_POD_INFO.sample(1, namespace=namespace, pod=pod)]
