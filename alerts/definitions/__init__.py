"""The alerts and recording rules, built from catalog entries and the thresholds config.

One module per concern: gpu (memory, heat, faults that latch, GPUs that vanish), allocator,
inference (SLO burn rates and per-engine warnings, over the inference layer), exporter, fleet
(one page for a fleet-wide fault), layer (the inference layer: the canary's, vLLM's and
SGLang's figures as one set of `inference:*` series), records (the recording rules the alerts
and dashboards share). Every expression names metrics through `exporter.catalog` attributes or
the engines' declarations (`exporter.engines`) and is checked again with `exporter.promql`;
every alert keeps only identity labels that survive a rollout.
"""

from __future__ import annotations

from alerts.definitions.allocator import allocator_alerts
from alerts.definitions.exporter import exporter_alerts
from alerts.definitions.fleet import FLEET_ALERT, PROBLEM, fleet_alerts
from alerts.definitions.gpu import gpu_alerts
from alerts.definitions.inference import inference_alerts
from alerts.definitions.records import (
    LATENCY_HISTOGRAMS,
    QUANTILES,
    quantile_record,
    recording_rules,
)
from alerts.model import Alert
from alerts.thresholds import Thresholds

#: Rule group name suffix, in file order.
GROUPS = ("gpu", "allocator", "inference", "exporter", "fleet")


def all_alerts(t: Thresholds) -> list[Alert]:
    """Every alert, in rule-file order."""
    return (
        gpu_alerts(t)
        + allocator_alerts(t)
        + inference_alerts(t)
        + exporter_alerts(t)
        + fleet_alerts(t)
    )


__all__ = [
    "FLEET_ALERT",
    "GROUPS",
    "LATENCY_HISTOGRAMS",
    "PROBLEM",
    "QUANTILES",
    "all_alerts",
    "quantile_record",
    "recording_rules",
]
