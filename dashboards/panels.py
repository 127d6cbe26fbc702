"""Panel specs: what a panel shows, independent of grafanalib, so tests can inspect them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from alerts.thresholds import Tiers


class PanelKind(StrEnum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    TABLE = "table"


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Threshold:
    """A value at which the panel turns a colour (drawn as a line on time series)."""

    value: float
    color: str  # "orange" for warning, "red" for critical


@dataclass(frozen=True)
class Panel:
    """A panel: title, description, unit, queries, size on the 24-column grid, thresholds.

    `fault` names the simulated scenario under which the panel shows data, for panels that are
    empty on a healthy fleet; `needs` names a component that must run (e.g. "harness").
    """

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: PanelKind = PanelKind.TIMESERIES
    width: int = 12
    height: int = 8
    thresholds: tuple[Threshold, ...] = ()
    base_color: str = "green"  # colour below the first threshold
    min: float | None = None
    max: float | None = None
    decimals: int | None = None  # 0 for counts of events (increase() extrapolates)
    stacked: bool = False
    step_lines: bool = False
    fault: str | None = None
    needs: str | None = None
    table_columns: dict[str, str] = field(default_factory=dict)  # field name -> display name


@dataclass(frozen=True)
class Row:
    """A collapsible-looking title row above the panels that follow it."""

    title: str


@dataclass(frozen=True)
class DashboardSpec:
    """A whole dashboard: identity, variables it uses, and its rows and panels in order."""

    uid: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    variables: tuple[str, ...] = ("cluster", "node", "gpu")
    tags: tuple[str, ...] = ()
    #: The series the variables' values are read from; "" for the exporters' own series.
    variable_source: str = ""

    @property
    def panels(self) -> list[Panel]:
        return [item for item in self.items if isinstance(item, Panel)]


def tiers(levels: Tiers) -> tuple[Threshold, ...]:
    """An alert's warning and critical thresholds as panel thresholds."""
    return warning_critical(levels.warning.threshold, levels.critical.threshold)


def warning_critical(warning: float, critical: float) -> tuple[Threshold, ...]:
    """The two alert tiers as panel thresholds."""
    return (Threshold(warning, "orange"), Threshold(critical, "red"))
