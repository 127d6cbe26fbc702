"""Dashboard specs → grafanalib objects → the JSON that Grafana 10/11 imports.

grafanalib 0.7.1 defaults to schemaVersion 12 and string datasources; we set a current schema
version and `{type, uid}` datasource objects ourselves, and pass unit strings (its Celsius
constant is misspelt).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from alerts import thresholds as alert_thresholds
from alerts.thresholds import Thresholds
from dashboards import fleet, gpu_detail, inference, memory
from dashboards.layout import place
from dashboards.panels import DashboardSpec, Panel, PanelKind, Row

SCHEMA_VERSION = 39  # Grafana 10.4 / 11
TAG = "gpu-inference-exporter"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GENERATED_DIR = "dashboards/generated"

#: Every dashboard, by uid, with the function that builds its spec.
DASHBOARDS: dict[str, Callable[[Thresholds], DashboardSpec]] = {
    fleet.UID: fleet.dashboard,
    gpu_detail.UID: gpu_detail.dashboard,
    inference.UID: inference.dashboard,
    memory.UID: memory.dashboard,
}

_VARIABLES = {
    "cluster": ("Cluster", "label_values(exporter_build_info, cluster)"),
    "node": ("Node", 'label_values(exporter_build_info{cluster=~"$cluster"}, node)'),
    "job": ("Job", 'label_values(exporter_build_info{cluster=~"$cluster"}, job)'),
    "gpu": ("GPU", 'label_values(gpu_info{cluster=~"$cluster", node=~"$node"}, gpu)'),
    "engine": ("Engine", ""),  # only with a spec's variable_source
    "model": ("Model", ""),
}


def specs(thresholds: Thresholds | None = None) -> list[DashboardSpec]:
    """Every dashboard spec, drawing the alert thresholds (the defaults unless given)."""
    t = thresholds or alert_thresholds.DEFAULTS
    return [build(t) for build in DASHBOARDS.values()]


def _steps(panel: Panel) -> list[dict[str, object]]:
    steps: list[dict[str, object]] = [{"color": panel.base_color, "value": None}]
    steps += [{"color": th.color, "value": th.value} for th in panel.thresholds]
    return steps


def _targets(panel: Panel) -> list[g.Target]:
    return [
        g.Target(
            expr=q.expr,
            legendFormat=q.legend,
            refId=chr(ord("A") + i),
            instant=q.instant or panel.kind is PanelKind.TABLE,
            format="table" if panel.kind is PanelKind.TABLE else "time_series",
            datasource=DATASOURCE,
        )
        for i, q in enumerate(panel.queries)
    ]


def _min_max(panel: Panel) -> dict[str, object]:
    limits = {
        k: v
        for k, v in (("min", panel.min), ("max", panel.max), ("decimals", panel.decimals))
        if v is not None
    }
    return {"fieldConfig": {"defaults": limits}} if limits else {}


def _panel(panel: Panel, grid: dict[str, int]) -> g.Panel:
    common = dict(
        title=panel.title,
        description=panel.description,
        dataSource=DATASOURCE,
        targets=_targets(panel),
        gridPos=grid,
        thresholds=_steps(panel),
        extraJson=_min_max(panel) or None,
    )
    if panel.kind is PanelKind.STAT:
        return g.Stat(
            **common,
            format=panel.unit,
            reduceCalc="lastNotNull",
            colorMode="background",
            color={"mode": "thresholds"},
        )
    if panel.kind is PanelKind.TABLE:
        return g.Table(
            **common,
            unit=panel.unit,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": dict(panel.table_columns),
                    },
                },
            ],
        )
    return g.TimeSeries(
        **common,
        unit=panel.unit,
        thresholdsStyleMode="line" if panel.thresholds else "off",
        lineInterpolation="stepAfter" if panel.step_lines else "linear",
        stacking={"mode": "normal", "group": "A"} if panel.stacked else {},
        fillOpacity=20 if panel.stacked else 0,
        legendDisplayMode="table",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
    )


def _templating(spec: DashboardSpec) -> g.Templating:
    variables = [
        g.Template(
            name="datasource",
            query="prometheus",
            type="datasource",
            label="Data source",
            default="Prometheus",
        )
    ]
    for i, name in enumerate(spec.variables):
        label, query = _VARIABLES[name]
        if spec.variable_source:  # each variable narrowed by those before it
            narrowed = ", ".join(f'{v}=~"${v}"' for v in spec.variables[:i])
            selector = f"{{{narrowed}}}" if narrowed else ""
            query = f"label_values({spec.variable_source}{selector}, {name})"
        variables.append(
            g.Template(
                name=name,
                label=label,
                query=query,
                dataSource=DATASOURCE,
                includeAll=True,
                multi=True,
                allValue=".*",
                default="All",
                refresh=2,  # on time range change
            )
        )
    return g.Templating(list=variables)


def to_grafanalib(spec: DashboardSpec) -> g.Dashboard:
    panels: list[g.Panel] = []
    for item, pos in place(spec.items):
        if isinstance(item, Row):
            panels.append(g.RowPanel(title=item.title, gridPos=pos.to_json()))
        else:
            panels.append(_panel(item, pos.to_json()))
    dashboard = g.Dashboard(
        title=spec.title,
        uid=spec.uid,
        description=spec.description,
        tags=[TAG, *spec.tags],
        panels=panels,
        templating=_templating(spec),
        links=[
            g.DashboardLink(
                title="GPU inference dashboards",
                tags=[TAG],
                asDropdown=False,
                includeVars=True,
                keepTime=True,
            )
        ],
        schemaVersion=SCHEMA_VERSION,
        time=g.Time("now-1h", "now"),
        refresh="30s",
        timezone="browser",
        sharedCrosshair=True,
    )
    return dashboard.auto_panel_ids()


def to_json(spec: DashboardSpec) -> str:
    """The dashboard's JSON, stable (sorted keys) so the committed file diffs cleanly."""
    data = to_grafanalib(spec).to_json_data()
    return json.dumps(data, cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"


def artifacts(alerts_config: str | None = None) -> dict[str, Callable[[str], str]]:
    """Generated dashboard files, with the thresholds of the alerts config (`generate`)."""
    out: dict[str, Callable[[str], str]] = {}
    for spec in specs(alert_thresholds.load(alerts_config)):
        text = to_json(spec)
        out[f"{GENERATED_DIR}/{spec.uid}.json"] = lambda _current, text=text: text
    return out
