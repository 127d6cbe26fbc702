"""Recording rules: what the alerts and the dashboards read at node, engine and service level.

Names follow Prometheus's `level:metric:operations`. The inference figures come from the
inference layer (alerts/definitions/layer.py: `inference:*`, one set of series for the canary,
vLLM and SGLang); the service level sums its bucket rates `by (le, ...)` before
`histogram_quantile`, so one quantile covers every engine behind a job, and the SLO ratios are
recorded for every burn-rate window the alerts use.
"""

from __future__ import annotations

from alerts.definitions import layer
from alerts.definitions.common import regex_of
from alerts.definitions.layer import slo_windows
from alerts.model import IDENTITY, RecordingRule
from alerts.thresholds import Duration, Thresholds
from exporter import catalog as c
from exporter.engines import Figure
from exporter.xid_catalog import XID_CATALOG

GPU_COUNT = "cluster_node:gpu_present:count"
XID_CRITICAL = "cluster_node_gpu_xid:gpu_xid_errors_critical:increase"
NVLINK_LINKS_UP = "cluster_node_gpu:gpu_nvlink_links_up:sum"

#: The latency histograms of the layer, by the short name the alerts and panels use.
LATENCY_HISTOGRAMS = {
    "request_duration": Figure.REQUEST_DURATION,
    "time_to_first_token": Figure.TIME_TO_FIRST_TOKEN,
    "inter_token_latency": Figure.INTER_TOKEN_LATENCY,
    "queue_duration": Figure.QUEUE_DURATION,
}
QUANTILES = {"p50": 0.5, "p99": 0.99}
LEVELS = {"service": IDENTITY["service"], "engine": IDENTITY["engine"]}


def quantile_record(level: str, figure: Figure, label: str) -> str:
    """`service:inference_<figure>:p99` (level: service or engine)."""
    return f"{level}:inference_{figure}:{label}"


def requests_rate(window: Duration) -> str:
    """Requests that count for the SLO (ok or failed; not rejected, not cancelled) per second,
    per service."""
    return f"service:inference_requests:rate{window}"


def error_ratio(level: str, window: Duration) -> str:
    return f"{level}:inference_request_errors:ratio_rate{window}"


def slow_ratio(figure: Figure, window: Duration) -> str:
    """Share of observations above the latency SLO's target."""
    return f"service:inference_{figure}:slo_miss_ratio_rate{window}"


def gpu_count_expr() -> str:
    """GPUs (distinct uuids) the exporter of a node sees now; 0 while it runs and sees none."""
    return (
        f"count by (cluster, node) (group by (cluster, node, uuid) ({c.GPU_UP})) "
        f"or on (cluster, node) 0 * group by (cluster, node) ({c.EXPORTER_BUILD_INFO})"
    )


def xid_critical_codes(t: Thresholds) -> list[int]:
    """Codes whose resolution bucket the thresholds make critical (reset, reboot, ...)."""
    return [
        c_ for c_, info in XID_CATALOG.items() if t.gpu_xid.severity_of(info.bucket) == "critical"
    ]


def recording_rules(t: Thresholds) -> list[RecordingRule]:
    """Every recording rule, in evaluation order: the GPU rules, the inference layer, then what
    reads the layer."""
    rules = [
        RecordingRule(
            GPU_COUNT,
            gpu_count_expr(),
            "GPUs (distinct uuids) the exporter of a node sees, 0 while it runs and sees none; "
            "an old and a new exporter pod scraped side by side during a rollout count once",
        ),
        RecordingRule(
            NVLINK_LINKS_UP,
            f"sum by (cluster, node, gpu, uuid) "
            f"(max by (cluster, node, gpu, uuid, link) ({c.GPU_NVLINK_LINK_UP}))",
            "NVLink links up per GPU (each link once, also while two exporter pods overlap)",
        ),
        RecordingRule(
            XID_CRITICAL,
            f"clamp_min(round(max by (cluster, node, gpu, uuid, xid) (increase("
            f'{c.GPU_XID_ERRORS}{{xid=~"{regex_of(xid_critical_codes(t))}"}}'
            f"[{t.gpu_xid.window}])) > 0), 1)",
            "Xid events (whole, at least 1) of the codes that need a reset or a reboot, per GPU "
            "(sparse: only while there are some): GpuXidError keeps firing over this for hours",
        ),
    ]
    return rules + layer.layer_rules(t) + inference_rules(t)


def inference_rules(t: Thresholds) -> list[RecordingRule]:
    """Quantiles, request rates, error ratios and SLO miss ratios over the layer."""
    w = t.inference_rate_window
    rules = []
    for level, identity in LEVELS.items():
        labels = ", ".join(identity)
        for figure in LATENCY_HISTOGRAMS.values():
            for label, q in QUANTILES.items():
                rules.append(
                    RecordingRule(
                        quantile_record(level, figure, label),
                        f"histogram_quantile({q}, sum by (le, {labels}) "
                        f"({layer.buckets(figure, w)}))",
                        f"{label} of {figure} over {w} per {level}",
                    )
                )
    service = ", ".join(IDENTITY["service"])
    requests, errors = Figure.REQUESTS, Figure.REQUEST_ERRORS
    rules.append(
        RecordingRule(
            error_ratio("engine", w),
            f"{layer.rate(errors, w)} / {layer.rate(requests, w)}",
            f"share of one engine's requests that failed over {w}",
        )
    )
    for window in slo_windows(t):
        total = f"sum by ({service}) ({layer.rate(requests, window)})"
        rules.append(RecordingRule(requests_rate(window), total, f"requests per second, {window}"))
        rules.append(
            RecordingRule(
                error_ratio("service", window),
                f"sum by ({service}) ({layer.rate(errors, window)}) / {total}",
                f"share of the service's requests that failed over {window}",
            )
        )
    for figure in layer.SLO_FIGURES:
        for window in slo_windows(t):
            rules.append(
                RecordingRule(
                    slow_ratio(figure, window),
                    f"1 - sum by ({service}) ({layer.within_target(figure, window)}) "
                    f"/ sum by ({service}) ({layer.observations(figure, window)})",
                    f"share of {figure} observations above the objective's target, {window}",
                )
            )
    return rules
