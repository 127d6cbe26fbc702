"""Alerts on the exporter itself: down, gone from service discovery, a source failing, stale.

What vanishes with a fault pages: a scrape that fails (`up == 0`), an exporter that stops
being a target at all, a GPU source that hangs (its series are kept a few intervals, then
dropped; the source's own up series stays). None of them depends on a series the fault removes.
"""

from __future__ import annotations

from alerts.definitions.common import SECONDS, UP, WHERE, held, max_by, num, regex_of
from alerts.model import Alert, TierRule
from alerts.thresholds import Duration, Thresholds
from exporter import catalog as c


def _target_up(job: str) -> str:
    """`up` of the exporter targets with a `node` label: the target's own (a Kubernetes
    relabeling) or, for a target without one (a static config), its `instance`. Never grouped
    by `instance` where `node` exists: a rollout changes the pod IP, not the node."""
    return (
        f'({UP}{{{job}, node!=""}} or '
        f'label_replace({UP}{{{job}, node=""}}, "node", "$1", "instance", "(.+)"))'
    )


def exporter_alerts(t: Thresholds) -> list[Alert]:
    fleet = t.links.fleet_dashboard
    down, missing, stale = t.exporter_down, t.exporter_missing, t.exporter_stale
    src = t.exporter_sources_down
    job = f'job="{t.exporter_job}"'
    gpu_sources = regex_of(src.gpu_sources)
    return [
        Alert(
            "GpuExporterDown",
            "exporter",
            "exporter",
            "GPU exporter target is down",
            f"{UP}={{{{ $value }}}}",
            fleet,
            "instance",
            (
                TierRule(
                    "critical",
                    max_by("instance", _target_up(job)) + " == 0",
                    down.for_,
                    f"Prometheus has failed to scrape the GPU exporter on {WHERE}"
                    f"{held(down.for_)}: the node's GPUs are unwatched. Alertmanager silences "
                    "the node's other alerts.",
                    f"up{{{job}}} == 0{held(down.for_)}",
                ),
            ),
            key="exporter_down",
            clears="a scrape succeeds",
        ),
        Alert(
            "GpuExporterMissing",
            "exporter",
            "exporter",
            "GPU exporter is gone from service discovery",
            "{{ $value }}",
            fleet,
            "node",
            (
                TierRule(
                    "warning",
                    f"group by (cluster, node) (max_over_time({c.EXPORTER_BUILD_INFO}"
                    f"[{missing.lookback}])) unless on (cluster, node) "
                    f"group by (cluster, node) ({c.EXPORTER_BUILD_INFO}) unless on (cluster, "
                    f"node) {_target_up(job)}",
                    missing.for_,
                    f"The GPU exporter on {WHERE} answered within the last {missing.lookback} "
                    f"and is no longer scraped at all{held(missing.for_)}: its pod is gone "
                    "from service discovery (DaemonSet changed, node selector, node removed).",
                    f"an exporter seen within {missing.lookback} is no longer a target"
                    f"{held(missing.for_)}",
                ),
                TierRule(
                    "critical",
                    f"absent({UP}{{{job}}})",
                    missing.for_,
                    f"Prometheus has no target of job {t.exporter_job} at all"
                    f"{held(missing.for_)}: no GPU of the cluster is watched.",
                    f"no target of job {t.exporter_job}{held(missing.for_)}",
                ),
            ),
            key="exporter_missing",
            clears="the exporter is scraped again, or the lookback passes (warning)",
        ),
        Alert(
            "GpuExporterSourceDown",
            "exporter",
            "exporter",
            "A source of the GPU exporter is failing",
            "{{ $labels.source }}",
            fleet,
            "node",
            (
                TierRule(
                    "critical",
                    max_by("node", f'{c.EXPORTER_SOURCE_UP}{{source=~"{gpu_sources}"}}', "source")
                    + " == 0",
                    src.critical_for,
                    f"The GPU exporter on {WHERE} has had its GPU source "
                    f"{{{{ $labels.source }}}} failing or hung{held(src.critical_for)}: the "
                    "node's GPU series are gone (NVML or DCGM hangs, the driver is wedged, a "
                    "GPU fell off the bus). Alertmanager silences the node's other alerts.",
                    f"a GPU source ({', '.join(src.gpu_sources)}) down{held(src.critical_for)}",
                ),
                TierRule(
                    "warning",
                    max_by("node", f'{c.EXPORTER_SOURCE_UP}{{source!~"{gpu_sources}"}}', "source")
                    + " == 0",
                    src.warning_for,
                    f"The GPU exporter on {WHERE} has had its source {{{{ $labels.source }}}} "
                    f"failing{held(src.warning_for)}: that source's series are missing.",
                    f"another source down{held(src.warning_for)}",
                ),
            ),
            key="exporter_sources_down",
            clears="the source answers again",
        ),
        Alert(
            "GpuExporterStale",
            "exporter",
            "exporter",
            "GPU exporter data is stale",
            SECONDS,
            fleet,
            "instance",
            (
                TierRule(
                    "warning",
                    max_by(
                        "instance",
                        f"timestamp({c.EXPORTER_LAST_COLLECT_TIMESTAMP}) - "
                        f"{c.EXPORTER_LAST_COLLECT_TIMESTAMP}",
                    )
                    + f" > {num(stale.after.seconds)}",
                    stale.for_,
                    f"The GPU exporter on {WHERE} served a snapshot collected {SECONDS} before "
                    f"the scrape, older than {stale.after}{held(stale.for_)}: its collection "
                    "loop is stuck.",
                    f"snapshot age at scrape time > {stale.after}{held(stale.for_)}",
                ),
            ),
            key="exporter_stale",
            clears="a fresh snapshot is served",
        ),
        Alert(
            "Watchdog",
            "exporter",
            "exporter",
            "Always firing: the alerting pipeline works",
            "{{ $value }}",
            fleet,
            "global",
            (
                TierRule(
                    "none",
                    "vector(1)",
                    Duration(0),
                    "This alert always fires, to prove that Prometheus evaluates the rules and "
                    "Alertmanager delivers them. Route it to a dead man's switch, which pages "
                    "when it stops arriving.",
                    "always",
                ),
            ),
            clears="never",
        ),
    ]
