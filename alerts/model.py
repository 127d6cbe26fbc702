"""The shapes of the rule definitions: an alert with one or two severity tiers, a recording rule."""

from __future__ import annotations

from dataclasses import dataclass

from alerts.thresholds import Duration

SEVERITIES = ("critical", "warning", "none")
SCOPES = ("gpu", "target", "global")


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """A Prometheus recording rule shared by the alerts and the dashboards."""

    record: str
    expr: str
    help: str


@dataclass(frozen=True, slots=True)
class TierRule:
    """One tier of an alert: a Prometheus alerting rule with its own severity and `for`."""

    severity: str
    expr: str
    for_: Duration
    description: str  # Go template: $labels, $value
    condition: str  # the threshold in words, for the runbook index: "used / total > 75%"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One condition, under one alert name for all its tiers (so inhibition can match on it)."""

    name: str
    group: str  # the rule group: gpu, allocator, inference or exporter
    component: str  # the `component` label: gpu, inference or exporter
    summary: str  # static
    value: str  # Go template of the value annotation, e.g. "{{ $value | humanizePercentage }}"
    dashboard: str  # the uid of the dashboard to link
    scope: str  # gpu: carries gpu, uuid and target labels; target: target labels; global: none
    tiers: tuple[TierRule, ...]

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"{self.name}: scope {self.scope!r} is not one of {SCOPES}")
        severities = [t.severity for t in self.tiers]
        if not severities or len(set(severities)) != len(severities):
            raise ValueError(f"{self.name}: one rule per severity, at least one ({severities})")
