"""Dashboards: well-formed for current Grafana, on the grid, and plotting only catalog metrics."""

import json

import pytest

from alerts.definitions import all_alerts, recording_rules
from alerts.rules import dashboard_link
from alerts.thresholds import DEFAULTS
from dashboards.build import DASHBOARDS, SCHEMA_VERSION, TAG, specs, to_json
from dashboards.layout import GRID_WIDTH, place
from dashboards.panels import Panel, Row
from exporter.catalog import FAMILIES
from exporter.promql import expression_problems, metric_names

SPECS = specs()
RECORDS: dict[str, str] = {}
for _rule in recording_rules(DEFAULTS):  # the layer records one name once per engine
    RECORDS[_rule.record] = RECORDS.get(_rule.record, "") + " or " + _rule.expr


def all_queries():
    for spec in SPECS:
        for panel in spec.panels:
            for query in panel.queries:
                yield spec.uid, panel, query


def test_uids_are_the_stable_ones_and_unique():
    assert list(DASHBOARDS) == ["gpu-fleet", "gpu-detail", "llm-inference", "gpu-memory"]
    assert [s.uid for s in SPECS] == list(DASHBOARDS)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.uid)
def test_json_is_what_current_grafana_imports(spec):
    data = json.loads(to_json(spec))
    assert data["uid"] == spec.uid and data["title"] and data["description"]
    assert data["schemaVersion"] == SCHEMA_VERSION >= 36
    assert TAG in data["tags"]
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in spec.variables:
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    assert data["links"][0]["tags"] == [TAG] and data["links"][0]["includeVars"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"]
        assert panel["fieldConfig"]["defaults"]["unit"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.uid)
def test_no_two_panels_overlap_and_all_fit_the_grid(spec):
    placed = place(spec.items)
    for i, (_, a) in enumerate(placed):
        assert a.x >= 0 and a.x + a.w <= GRID_WIDTH
        for _, b in placed[i + 1 :]:
            assert not a.overlaps(b), (a, b)


def test_every_panel_has_a_unit_a_description_and_queries():
    for spec in SPECS:
        for item in spec.items:
            if isinstance(item, Row):
                continue
            assert isinstance(item, Panel)
            assert item.unit, item.title
            assert len(item.description) > 20, item.title
            assert item.queries, item.title


def test_every_query_reads_only_catalog_metrics_and_their_labels():
    for uid, panel, query in all_queries():
        assert metric_names(query.expr), f"{uid} / {panel.title}: no metric in {query.expr}"
        problems = expression_problems(query.expr, RECORDS)
        assert not problems, f"{uid} / {panel.title}: {problems}"


def test_every_gpu_allocator_and_inference_family_is_plotted_somewhere():
    plotted: set[str] = set()
    todo = [name for _, _, query in all_queries() for name in metric_names(query.expr)]
    while todo:  # a recording rule plots what it reads, through the inference layer too
        name = todo.pop()
        if name not in plotted:
            plotted.add(name)
            todo += metric_names(RECORDS.get(name, "").removeprefix(" or "))
    plotted = {n.removesuffix("_bucket").removesuffix("_count") for n in plotted}
    not_plotted = {"gpu_backend_up", "gpu_clock_event_seconds_total", "inference_ready",
                   "inference_engine_failed",  # an alert's, not a panel's (issue 15)
                   "inference_kv_cache_blocks", "inference_model_info"}  # fmt: skip
    for name in FAMILIES:
        if name.startswith(("gpu_", "torch_cuda_", "inference_")) and name not in not_plotted:
            assert name in plotted, f"{name} has no panel"


def test_thresholds_come_from_the_alert_config(tmp_path):
    from alerts import thresholds

    config = tmp_path / "thresholds.yml"
    config.write_text(
        "gpu_temperature:\n  warning: {threshold: 77}\n  critical: {threshold: 88}\n"
        "torch_fragmentation:\n  tiers:\n    critical: {threshold: 0.6}\n"
    )
    t = thresholds.load(config)
    fleet = next(s for s in specs(t) if s.uid == "gpu-fleet")
    hottest = next(p for p in fleet.panels if p.title == "Hottest GPU")
    assert [th.value for th in hottest.thresholds] == [77.0, 88.0]
    memory = next(s for s in specs(t) if s.uid == "gpu-memory")
    ratio = next(p for p in memory.panels if p.title == "Fragmentation ratio")
    assert [th.value for th in ratio.thresholds] == [0.3, 0.6]
    default = next(p for p in specs()[0].panels if p.title == "Hottest GPU")
    assert [th.value for th in default.thresholds] == [85.0, 90.0]


def test_the_dashboards_select_identity_that_survives_a_rollout():
    """cluster and node, as the alerts group by; never the pod's instance."""
    for spec in SPECS:
        assert {"cluster", "node"} <= set(spec.variables), spec.uid
    for uid, panel, query in all_queries():
        assert "$instance" not in query.expr and "{{instance}}" not in query.legend, (
            f"{uid} / {panel.title}"
        )


def test_every_alert_links_to_variables_its_dashboard_has():
    by_uid = {s.uid: s for s in SPECS}
    for alert in all_alerts(DEFAULTS):
        link = dashboard_link(DEFAULTS.links, alert)
        spec = by_uid[alert.dashboard]
        for part in link.partition("?")[2].split("&"):
            if part:
                name = part.split("=")[0].removeprefix("var-")
                assert name in spec.variables, f"{alert.name} links var-{name} to {spec.uid}"


def test_the_fleet_dashboard_stays_cheap_at_a_thousand_nodes():
    """No range query over every Xid or NVLink series on a refresh: those are the largest
    families (dozens of series per GPU); the fleet reads their state or the alerts' rules."""
    fleet = next(s for s in SPECS if s.uid == "gpu-fleet")
    for panel in fleet.panels:
        for query in panel.queries:
            for family in ("gpu_xid_errors_total", "gpu_nvlink_link_up", "gpu_nvlink_errors_total"):
                if family in query.expr:
                    assert "[" not in query.expr, f"{panel.title}: range over {family}"
            if "[1d]" in query.expr:  # only over one recorded series per node
                assert metric_names(query.expr) == ["cluster_node:gpu_present:count"], panel.title


def test_the_fleet_throttling_count_uses_the_alerts_reasons():
    fleet = next(s for s in SPECS if s.uid == "gpu-fleet")
    (panel,) = [p for p in fleet.panels if p.title == "GPUs throttling"]
    for reason in DEFAULTS.gpu_clock_slowdown.reasons:
        assert reason in panel.queries[0].expr
    assert "sw_power_cap" not in panel.queries[0].expr  # not a thermal or hardware slowdown


def test_the_llm_dashboard_reads_only_the_inference_layer_for_the_chosen_engine_and_model():
    (spec,) = [s for s in SPECS if s.uid == "llm-inference"]
    assert spec.variables[-2:] == ("engine", "model")
    data = json.loads(to_json(spec))
    queries = {
        v["name"]: v["query"] for v in data["templating"]["list"] if v["name"] != "datasource"
    }
    assert queries["cluster"] == "label_values(inference:requests_running:sum, cluster)"
    assert queries["model"] == (
        'label_values(inference:requests_running:sum{cluster=~"$cluster", node=~"$node", '
        'job=~"$job", engine=~"$engine"}, model)'
    )
    for panel in spec.panels:
        for query in panel.queries:
            for name in metric_names(query.expr):  # the layer, or the rules over it
                assert name in RECORDS and name.split(":")[0] in {"inference", "engine", "service"}
                reads = metric_names(RECORDS[name].removeprefix(" or "))
                assert name.startswith("inference:") or all(
                    n.startswith("inference:") for n in reads
                ), (name, reads)
            assert 'engine=~"$engine", model=~"$model"' in query.expr, query.expr
