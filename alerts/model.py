"""The shapes of the rule definitions: an alert with its severity tiers, a recording rule."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerts.thresholds import Duration

#: critical pages, warning opens a low-urgency incident, info never notifies (dashboards and
#: inhibition only), none is the Watchdog's heartbeat.
SEVERITIES = ("critical", "warning", "info", "none")

#: What an alert is about, and so the labels it keeps (its identity, which survives an
#: exporter rollout: never `instance` or `pod`):
#:   gpu      cluster, node, gpu, uuid (and the condition's own labels: xid, reason, ...)
#:   node     cluster, node
#:   instance cluster, node, namespace, job (one exporter)
#:   engine   cluster, node, namespace, job, engine, model (one inference engine: the canary,
#:            a vLLM or an SGLang server, or the replicas of one on a node)
#:   service  cluster, namespace, job, engine, model (every engine behind one job)
#:   fleet    cluster (the same alert on many nodes at once)
#:   global   no labels
SCOPES = ("gpu", "node", "instance", "engine", "service", "fleet", "global")

IDENTITY: dict[str, tuple[str, ...]] = {
    "gpu": ("cluster", "node", "gpu", "uuid"),
    "node": ("cluster", "node"),
    "instance": ("cluster", "node", "namespace", "job"),
    "engine": ("cluster", "node", "namespace", "job", "engine", "model"),
    "service": ("cluster", "namespace", "job", "engine", "model"),
    "fleet": ("cluster",),
    "global": (),
}


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """A Prometheus recording rule shared by the alerts and the dashboards."""

    record: str
    expr: str
    help: str
    labels: tuple[tuple[str, str], ...] = ()  # static labels the rule adds (the engine's name)


@dataclass(frozen=True, slots=True)
class TierRule:
    """One tier of an alert: a Prometheus alerting rule with its own severity and `for`."""

    severity: str
    expr: str
    for_: Duration
    description: str  # Go template: $labels, $value
    condition: str  # the threshold in words, for the runbook index: "used / total > 75%"
    keep_firing_for: Duration | None = None  # None: the thresholds' default
    labels: tuple[tuple[str, str], ...] = ()  # static labels besides severity and component

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One condition, under one alert name for all its tiers (so inhibition can match on it)."""

    name: str
    group: str  # the rule group: gpu, allocator, inference, exporter or fleet
    component: str  # the `component` label: gpu, allocator, inference or exporter
    summary: str  # static
    value: str  # Go template of the value annotation, e.g. "{{ $value | humanizePercentage }}"
    dashboard: str  # the uid of the dashboard to link
    scope: str  # see SCOPES
    tiers: tuple[TierRule, ...]
    key: str = ""  # the thresholds key it reads (what a scope can override); "" for none
    clears: str = ""  # what ends it, for the runbook index: "the GPU answers again"
    extra_keys: tuple[str, ...] = field(default=())  # other keys a scope may override

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"{self.name}: scope {self.scope!r} is not one of {SCOPES}")
        severities = [t.severity for t in self.tiers]
        if not severities:
            raise ValueError(f"{self.name}: at least one tier")

    @property
    def identity(self) -> tuple[str, ...]:
        return IDENTITY[self.scope]
