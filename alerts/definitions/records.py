"""Recording rules: what the alerts and the dashboards read at node and service level.

Names follow Prometheus's `level:metric:operations`. Service level sums `by (le, ...)` before
`histogram_quantile`, so one quantile covers every engine behind a job; the SLO ratios are
recorded for every burn-rate window the alerts use.
"""

from __future__ import annotations

from alerts.definitions.common import le_regex, regex_of
from alerts.model import IDENTITY, RecordingRule
from alerts.thresholds import Duration, Thresholds
from exporter import catalog as c
from exporter.xid_catalog import XID_CATALOG

GPU_COUNT = "cluster_node:gpu_present:count"
XID_CRITICAL = "cluster_node_gpu_xid:gpu_xid_errors_critical:increase"
NVLINK_LINKS_UP = "cluster_node_gpu:gpu_nvlink_links_up:sum"

LATENCY_HISTOGRAMS = {
    "request_duration": c.INFERENCE_REQUEST_DURATION,
    "time_to_first_token": c.INFERENCE_TIME_TO_FIRST_TOKEN,
    "time_per_output_token": c.INFERENCE_TIME_PER_OUTPUT_TOKEN,
    "queue_duration": c.INFERENCE_QUEUE_DURATION,
}
QUANTILES = {"p50": 0.5, "p99": 0.99}
SERVICE = ", ".join(IDENTITY["service"])
INSTANCE = ", ".join(IDENTITY["instance"])


def quantile_record(level: str, family: c.MetricFamily, label: str) -> str:
    """`service:<histogram name>:p99` (level: service or instance)."""
    return f"{level}:{family.name}:{label}"


def requests_rate(level: str, window: Duration) -> str:
    """Requests that count for the SLO (ok or failed; not rejected, not cancelled) per second."""
    return f"{level}:inference_requests:rate{window}"


def error_ratio(level: str, window: Duration) -> str:
    return f"{level}:inference_request_errors:ratio_rate{window}"


def slow_ratio(family: c.MetricFamily, window: Duration) -> str:
    """Share of observations above the latency SLO's target."""
    return f"service:{family.name}:slo_miss_ratio_rate{window}"


def slo_windows(t: Thresholds) -> list[Duration]:
    """Every window a burn-rate alert reads, plus the per-instance rate window."""
    windows = {t.inference_rate_window}
    for w in (*t.inference_slo.page, *t.inference_slo.ticket):
        windows.update((w.long, w.short))
    return sorted(windows, key=lambda d: d.seconds)


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
    errors = regex_of(t.inference_error_outcomes)
    counted = regex_of(("ok", *t.inference_error_outcomes))
    w = t.inference_rate_window
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
    for level, labels in (("service", SERVICE), ("instance", INSTANCE)):
        for fam in LATENCY_HISTOGRAMS.values():
            for label, q in QUANTILES.items():
                rules.append(
                    RecordingRule(
                        quantile_record(level, fam, label),
                        f"histogram_quantile({q}, sum by (le, {labels}) "
                        f"(rate({fam.name}_bucket[{w}])))",
                        f"{label} of {fam.name} over {w} per {level}",
                    )
                )
    windows = slo_windows(t)
    for level, labels in (("service", SERVICE), ("instance", INSTANCE)):
        for window in windows if level == "service" else [w]:
            total = (
                f'sum by ({labels}) (rate({c.INFERENCE_REQUESTS}{{outcome=~"{counted}"}}'
                f"[{window}]))"
            )
            rules.append(
                RecordingRule(requests_rate(level, window), total, f"requests per second, {window}")
            )
            rules.append(
                RecordingRule(
                    error_ratio(level, window),
                    f'sum by ({labels}) (rate({c.INFERENCE_REQUESTS}{{outcome=~"{errors}"}}'
                    f"[{window}])) / {total}",
                    f"share of requests that ended {', '.join(t.inference_error_outcomes)}",
                )
            )
    for fam, slo in (
        (c.INFERENCE_TIME_TO_FIRST_TOKEN, t.inference_ttft_slo),
        (c.INFERENCE_TIME_PER_OUTPUT_TOKEN, t.inference_tpot_slo),
    ):
        for window in windows:
            rules.append(
                RecordingRule(
                    slow_ratio(fam, window),
                    f"1 - sum by ({SERVICE}) "
                    f'(rate({fam.name}_bucket{{le=~"{le_regex(slo.target)}"}}[{window}])) '
                    f"/ sum by ({SERVICE}) (rate({fam.name}_count[{window}]))",
                    f"share of {fam.name} above {slo.target:g}s",
                )
            )
    return rules
