"""`gpu-inference-exporter dashboards preview`: each dashboard drawn to a PNG from live data.

For people without Grafana at hand: every panel's queries run against a real Prometheus
(variables expanded as "All"), and the panels are laid out on the figure as Grafana would lay
them out on its 24-column grid. Time series are lines with the alert thresholds dashed, stats
are one big number coloured by threshold, tables are tables.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dashboards.build import specs
from dashboards.layout import GRID_WIDTH, place
from dashboards.panels import DashboardSpec, Panel, PanelKind, Row
from exporter.catalog import EXPORTER_BUILD_INFO

_COLORS = {"green": "#37872d", "orange": "#ff9830", "red": "#e02f44"}
_CELL_INCHES = 0.62  # width of one grid column
_ROW_INCHES = 0.36  # height of one grid unit


class PreviewError(Exception):
    """The previews would show nothing true (Prometheus unreachable, a query failing, a
    dashboard without data): one line saying why; no PNG is written."""


@dataclass(frozen=True)
class PanelOutcome:
    """What one panel came to: data drawn, or not, or a failed query."""

    dashboard: str
    panel: str
    has_data: bool
    error: str = ""


@dataclass(frozen=True)
class PreviewOptions:
    prometheus: str
    out: Path
    range_seconds: float = 900.0
    rate_interval: str = "1m"
    points: int = 120
    allow_empty: bool = False  # skip a dashboard without data instead of failing


class PrometheusClient:
    """The two query endpoints a preview needs."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str, params: dict[str, str]) -> list[dict]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"{params.get('query')}: {body.get('error')}")
        return body["data"]["result"]

    def instant(self, expr: str, at: float) -> list[dict]:
        return self._get("query", {"query": expr, "time": f"{at:.3f}"})

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return self._get("query_range", params)


def expand(expr: str, options: PreviewOptions) -> str:
    """Grafana's variables as a preview expands them: every job, instance, GPU, engine and
    model."""
    replacements = {
        "$__rate_interval": options.rate_interval,
        "$__range": f"{int(options.range_seconds)}s",
        "$cluster": ".*",
        "$node": ".*",
        "$job": ".*",
        "$gpu": ".*",
        "$engine": ".*",
        "$model": ".*",
    }
    for var, value in replacements.items():
        expr = expr.replace(var, value)
    return expr


def format_value(value: float, unit: str) -> str:
    """A value with its unit the way a person reads it."""
    if math.isnan(value):
        return "–"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "celsius":
        return f"{value:.1f} °C"
    scaled = {
        "bytes": ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"), (1, "B")),
        "Bps": ((1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s"), (1, "B/s")),
        "hertz": ((1e9, "GHz"), (1e6, "MHz"), (1, "Hz")),
        "watt": ((1e3, "kW"), (1, "W")),
        "joule": ((1e9, "GJ"), (1e6, "MJ"), (1e3, "kJ"), (1, "J")),
        "s": ((3600, "h"), (60, "min"), (1, "s"), (1e-3, "ms")),
    }.get(unit)
    if scaled:
        for factor, suffix in scaled:
            if abs(value) >= factor:
                return f"{value / factor:.3g} {suffix}"
        factor, suffix = scaled[-1]
        return f"{value / factor:.3g} {suffix}"
    suffix = {"ops": "/s", "reqps": " req/s"}.get(unit, "")
    return f"{value:.4g}{suffix}"


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _threshold_color(panel: Panel, value: float) -> str:
    color = panel.base_color
    for threshold in panel.thresholds:
        if value >= threshold.value:
            color = threshold.color
    return _COLORS.get(color, color)


def render_dashboard(
    spec: DashboardSpec, client: PrometheusClient, options: PreviewOptions
) -> tuple[Path, list[PanelOutcome]]:
    """Draw one dashboard to OUT/<uid>.png; the path and what each panel came to."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placed = place(spec.items)
    height_units = max(pos.y + pos.h for _, pos in placed)
    fig = plt.figure(figsize=(GRID_WIDTH * _CELL_INCHES, height_units * _ROW_INCHES + 0.8))
    fig.suptitle(spec.title, fontsize=16, x=0.01, ha="left")
    end = time.time()
    start = end - options.range_seconds
    step = max(1.0, options.range_seconds / options.points)
    top = 1 - 0.8 / fig.get_figheight()
    outcomes: list[PanelOutcome] = []
    for item, pos in placed:
        rect = (
            pos.x / GRID_WIDTH + 0.004,
            top * (1 - (pos.y + pos.h) / height_units) + 0.006,
            pos.w / GRID_WIDTH - 0.008,
            top * pos.h / height_units - 0.02,
        )
        if isinstance(item, Row):
            fig.text(rect[0], rect[1] + rect[3] / 2, item.title, fontsize=12, weight="bold")
            continue
        if item.kind is PanelKind.TIMESERIES:  # room for the value and time tick labels
            rect = (rect[0] + 0.04, rect[1] + 0.025, rect[2] - 0.045, rect[3] - 0.03)
        ax = fig.add_axes(rect)
        ax.set_title(item.title, fontsize=9, loc="left")
        try:
            has_data = _draw(ax, item, client, options, start, end, step)
        except Exception as exc:  # noted, and the other panels still drawn
            outcomes.append(PanelOutcome(spec.title, item.title, False, str(exc)))
            continue
        outcomes.append(PanelOutcome(spec.title, item.title, has_data))
    options.out.mkdir(parents=True, exist_ok=True)
    path = options.out / f"{spec.uid}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path, outcomes


def _draw(ax, panel: Panel, client, options, start, end, step) -> bool:  # type: ignore[no-untyped-def]
    """Draw one panel; True when a query returned data."""
    if panel.kind is PanelKind.STAT:
        result = client.instant(expand(panel.queries[0].expr, options), end)
        value = float(result[0]["value"][1]) if result else math.nan
        color = "#555555" if math.isnan(value) else _threshold_color(panel, value)
        ax.set_facecolor(color)
        ax.text(0.5, 0.45, format_value(value, panel.unit), ha="center", va="center",
                fontsize=16, color="white", weight="bold", transform=ax.transAxes)  # fmt: skip
        ax.set_xticks([])
        ax.set_yticks([])
        return bool(result)
    if panel.kind is PanelKind.TABLE:
        return _draw_table(ax, panel, client, options, end)
    drawn = 0
    for query in panel.queries:
        for series in client.range(expand(query.expr, options), start, end, step):
            xs = [float(t) - end for t, _ in series["values"]]
            ys = [float(v) for _, v in series["values"]]
            style = "steps-post" if panel.step_lines else "default"
            ax.plot(xs, ys, drawstyle=style, linewidth=1,
                    label=_legend(query.legend, series["metric"]))  # fmt: skip
            drawn += 1
    for threshold in panel.thresholds:
        ax.axhline(threshold.value, color=_COLORS.get(threshold.color), linestyle="--", linewidth=1)
    if drawn == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.yaxis.set_major_formatter(lambda v, _pos: format_value(v, panel.unit))
    ax.xaxis.set_major_formatter(
        lambda v, _pos: f"{v / 60:.0f} min" if options.range_seconds > 300 else f"{v:.0f} s"
    )
    ax.tick_params(labelsize=7)
    if panel.min is not None:
        ax.set_ylim(bottom=panel.min)
    if panel.max is not None:
        ax.set_ylim(top=panel.max * 1.05)
    if 0 < drawn <= 10:
        ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.6)
    return drawn > 0


def _draw_table(ax, panel: Panel, client, options, end) -> bool:  # type: ignore[no-untyped-def]
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    columns: list[str] = []
    for i, query in enumerate(panel.queries):
        column = f"Value #{chr(ord('A') + i)}"
        for series in client.instant(expand(query.expr, options), end):
            labels = series["metric"]
            key = (labels.get("instance", ""), labels.get("gpu", ""))
            row = rows.setdefault(key, {"instance": key[0], "gpu": key[1]})
            row.update({k: v for k, v in labels.items() if k not in row})
            row[column] = f"{float(series['value'][1]):.4g}"
            columns += [k for k in [*labels, column] if k not in columns]
    names = panel.table_columns or {c: c for c in columns}
    shown = [c for c in names if c in columns or c in ("instance", "gpu")]
    ax.set_axis_off()
    if not rows:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return False
    body = [[row.get(c, "") for c in shown] for _, row in sorted(rows.items())][:20]
    table = ax.table(cellText=body, colLabels=[names.get(c, c) for c in shown], loc="upper center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    return True


def run_preview(options: PreviewOptions, skipped: list[str] | None = None) -> list[Path]:
    """Render every dashboard; returns the PNG paths. PreviewError, before any PNG is written
    to OUT, when Prometheus cannot be reached, a panel's query fails, no panel has data, or a
    dashboard has no panel with data (unless `allow_empty`: then it is not written, and its
    title added to `skipped`)."""
    client = PrometheusClient(options.prometheus)
    probe = f"max_over_time({EXPORTER_BUILD_INFO}[{int(options.range_seconds)}s])"
    try:
        scraped = client.instant(probe, time.time())
    except (OSError, ValueError, RuntimeError) as exc:
        raise PreviewError(f"cannot query Prometheus at {client.url}: {_reason(exc)}") from None
    if not scraped:
        raise PreviewError(
            f"Prometheus at {client.url} has no {EXPORTER_BUILD_INFO} in the last "
            f"{options.range_seconds:g}s: is it scraping gpu-inference-exporter?"
        )
    with tempfile.TemporaryDirectory(prefix="gie-preview-") as staging:
        staged = PreviewOptions(**{**options.__dict__, "out": Path(staging)})
        drawn = [render_dashboard(spec, client, staged) for spec in specs()]
        outcomes = [o for _, per_panel in drawn for o in per_panel]
        failed = [o for o in outcomes if o.error]
        if failed:
            first = failed[0]
            raise PreviewError(
                f"{len(failed)} panel queries failed against {client.url} (first: "
                f"{first.dashboard} / {first.panel}: {first.error})"
            )
        empty = [
            title
            for title in dict.fromkeys(o.dashboard for o in outcomes)
            if not any(o.has_data for o in outcomes if o.dashboard == title)
        ]
        if empty and (not options.allow_empty or len(empty) == len(drawn)):
            raise PreviewError(
                f"Prometheus at {client.url} has no data for any panel of {', '.join(empty)}: "
                "is it scraping the exporter (with the harness, for the inference dashboard)?"
            )
        if skipped is not None:
            skipped.extend(empty)
        options.out.mkdir(parents=True, exist_ok=True)
        paths = []
        for staged_path, per_panel in drawn:
            if per_panel and per_panel[0].dashboard in empty:
                continue
            path = options.out / staged_path.name
            shutil.move(staged_path, path)
            paths.append(path)
    return paths


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)
