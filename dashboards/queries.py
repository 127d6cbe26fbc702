"""PromQL building blocks shared by the dashboards (label selectors, quantiles, joins)."""

from __future__ import annotations

from exporter.catalog import MetricFamily

#: Selector of the GPUs chosen by the dashboard variables: identity that survives an
#: exporter rollout (cluster, node, gpu), as the alerts use, never the pod's instance.
GPU = 'cluster=~"$cluster", node=~"$node", gpu=~"$gpu"'
#: Selector of the exporters (and inference engines) chosen by the dashboard variables.
HOST = 'cluster=~"$cluster", node=~"$node", job=~"$job"'
#: Selector of the service-level recording rules (cluster, namespace, job).
SERVICE = 'cluster=~"$cluster", job=~"$job"'
#: Selector of the inference layer's series of the engines chosen by the variables.
ENGINE = HOST + ', engine=~"$engine", model=~"$model"'
#: Selector of the inference services (every engine behind a job) chosen by the variables.
ENGINE_SERVICE = SERVICE + ', engine=~"$engine", model=~"$model"'
#: The rate window Grafana picks from the scrape interval.
RATE = "$__rate_interval"


def sel(family: MetricFamily, selector: str = GPU, **labels: str) -> str:
    """`family{selector, label="value", ...}`."""
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return f"{family.name}{{{selector}{extra}}}"


def sel_re(family: MetricFamily, selector: str = GPU, **labels: str) -> str:
    """`family{selector, label=~"regex", ...}`."""
    extra = "".join(f', {k}=~"{v}"' for k, v in labels.items())
    return f"{family.name}{{{selector}{extra}}}"


def quantile(q: float, histogram: MetricFamily, selector: str = HOST, by: str = "") -> str:
    """`histogram_quantile(q, sum by (le[, by]) (rate(h_bucket{selector}[$__rate_interval])))`."""
    group = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({group}) "
        f"(rate({histogram.name}_bucket{{{selector}}}[{RATE}])))"
    )


def share(numerator: str, denominator: str) -> str:
    """A ratio of two expressions with the same labels."""
    return f"{numerator} / {denominator}"
