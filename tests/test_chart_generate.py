"""The chart's generated files (exporter/chart.py): copies of the generated rules and dashboards,
and the Alertmanager config converted to an AlertmanagerConfig, whatever routing it holds."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from exporter.chart import (
    ALERTMANAGER_FILE,
    RULES_FILE,
    SECRET_PLACEHOLDER,
    alertmanager_config_spec,
    parse_matcher,
    secret_keys,
    value_docs,
)
from exporter.generate import artifacts, stale_artifacts
from tests.chart_helpers import CHART, operator_errors
from tests.conftest import REPO
from tests.test_cli import cli


def as_resource(spec: dict) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": {"name": "gie", "namespace": "monitoring"},
        "spec": spec,
    }


def test_the_chart_files_are_generated_from_the_other_artifacts():
    generated = artifacts()
    assert generated[RULES_FILE]("") == generated["alerts/generated/rules.yml"]("")
    dashboards = [p for p in generated if p.startswith("dashboards/generated/")]
    assert dashboards
    for path in dashboards:
        copy = f"helm/gpu-inference-exporter/files/dashboards/{path.rsplit('/', 1)[1]}"
        assert generated[copy]("") == generated[path]("")
    committed = sorted(
        p.name for p in (REPO / "helm/gpu-inference-exporter/files/dashboards").iterdir()
    )
    assert committed == sorted(p.rsplit("/", 1)[1] for p in dashboards)


def test_a_stale_chart_file_fails_generate_check(tmp_path):
    for rel in ("README.md", RULES_FILE, ALERTMANAGER_FILE):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    rules = tmp_path / RULES_FILE
    rules.write_text(rules.read_text().replace("for: ", "for: 1", 1))
    check = cli("generate", "--check", "--root", str(tmp_path))
    assert check.returncode == 1
    assert f"stale: {RULES_FILE}" in check.stderr
    assert RULES_FILE not in stale_artifacts(REPO)


def test_the_alertmanager_config_of_alerts_converts_and_matches_the_crd():
    source = yaml.safe_load((REPO / "alerts/alertmanager.yml").read_text())
    spec = alertmanager_config_spec(source)
    assert operator_errors(as_resource(spec)) == []
    assert [r["name"] for r in spec["receivers"]] == [r["name"] for r in source["receivers"]]
    assert len(spec["inhibitRules"]) == len(source.get("inhibit_rules", []))
    assert spec["route"]["receiver"] == source["route"]["receiver"]
    assert SECRET_PLACEHOLDER not in yaml.safe_dump(source)
    committed = yaml.safe_load((REPO / ALERTMANAGER_FILE).read_text())
    assert committed == spec


ROUTING = {
    "global": {"resolve_timeout": "5m", "pagerduty_url": "https://pd.example/v2/enqueue"},
    "route": {
        "receiver": "null",
        "group_by": ["cluster", "node", "uuid"],
        "group_wait": "30s",
        "routes": [
            {"receiver": "null", "matchers": ['severity="info"']},
            {
                "receiver": "page",
                "matchers": ['severity="critical"', 'alertname=~"Gpu.*"'],
                "continue": True,
                "routes": [{"receiver": "page", "matchers": ["team != ml"]}],
            },
            {"receiver": "heartbeat", "matchers": ['alertname="Watchdog"']},
        ],
    },
    "inhibit_rules": [
        {
            "source_matchers": ['alertname="InfoInhibitor"'],
            "target_matchers": ['severity="info"'],
            "equal": ["namespace"],
        },
        {
            "source_matchers": ['alertname="GpuLost"'],
            "target_matchers": ['alertname!~"GpuLost|Watchdog"'],
            "equal": ["cluster", "node", "uuid"],
        },
    ],
    "receivers": [
        {"name": "null"},
        {
            "name": "page",
            "pagerduty_configs": [
                {
                    "routing_key_file": "/secrets/page",
                    "send_resolved": True,
                    "client_url": "https://grafana.example",
                    "details": {"gpu": "{{ .CommonLabels.gpu }}"},
                    "links": [{"href": "https://runbook", "text": "Runbook"}],
                },
                {"routing_key_file": "/secrets/page-2"},
            ],
        },
        {"name": "heartbeat", "webhook_configs": [{"url": "https://dms/ping/x", "max_alerts": 1}]},
    ],
}


def test_any_routing_converts_null_receiver_nested_routes_and_inhibitions_included():
    spec = alertmanager_config_spec(ROUTING)
    assert operator_errors(as_resource(spec)) == []
    assert spec["receivers"][0] == {"name": "null"}
    page = spec["route"]["routes"][1]
    assert page["continue"] is True
    assert page["matchers"][1] == {"name": "alertname", "value": "Gpu.*", "matchType": "=~"}
    assert page["routes"][0]["matchers"] == [{"name": "team", "value": "ml", "matchType": "!="}]
    assert spec["inhibitRules"][1]["targetMatch"] == [
        {"name": "alertname", "value": "GpuLost|Watchdog", "matchType": "!~"}
    ]
    first, second = spec["receivers"][1]["pagerdutyConfigs"]
    assert first["routingKey"] == {"name": SECRET_PLACEHOLDER, "key": "page"}
    assert second["routingKey"] == {"name": SECRET_PLACEHOLDER, "key": "page-1"}
    assert first["url"] == second["url"] == "https://pd.example/v2/enqueue"
    assert first["clientURL"] == "https://grafana.example"
    assert first["details"] == [{"key": "gpu", "value": "{{ .CommonLabels.gpu }}"}]
    assert first["pagerDutyLinkConfigs"] == [{"href": "https://runbook", "alt": "Runbook"}]
    hook = spec["receivers"][2]["webhookConfigs"][0]
    assert hook == {"urlSecret": {"name": SECRET_PLACEHOLDER, "key": "heartbeat"}, "maxAlerts": 1}
    assert secret_keys(spec) == ["page", "page-1", "heartbeat"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["receivers"][1]["pagerduty_configs"][1].update(routing_key="k"), "plain"),
        (lambda c: c["receivers"][1].update(slack_configs=[{}]), "slack_configs"),
        (lambda c: c["route"].update(match={"a": "b"}), "match"),
        (lambda c: c.update(templates=["x.tmpl"]), "templates"),
        (lambda c: c["global"].update(smtp_from="a@b"), "smtp_from"),
        (lambda c: c["inhibit_rules"][0].update(source_match={"a": "b"}), "source_match"),
    ],
)
def test_what_an_alertmanager_config_cannot_express_is_refused(change, message):
    config = yaml.safe_load(yaml.safe_dump(ROUTING))
    change(config)
    with pytest.raises(ValueError, match=message):
        alertmanager_config_spec(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('severity="critical"', ("severity", "critical", "=")),
        ("severity = critical", ("severity", "critical", "=")),
        ('alertname!~"Gpu(Lost|Xid.*)"', ("alertname", "Gpu(Lost|Xid.*)", "!~")),
        (r'summary="say \"hi\""', ("summary", 'say "hi"', "=")),
        ('gpu!=""', ("gpu", "", "!=")),
    ],
)
def test_matchers_parse_like_alertmanagers(text, expected):
    name, value, op = expected
    assert parse_matcher(text) == {"name": name, "value": value, "matchType": op}


def test_a_matcher_that_does_not_parse_is_refused():
    with pytest.raises(ValueError, match="matcher"):
        parse_matcher("severity critical")


def schema_leaves(schema: dict, prefix: str = "") -> list[str]:
    leaves = []
    for key, node in schema["properties"].items():
        if "properties" in node:
            leaves += schema_leaves(node, f"{prefix}{key}.")
        else:
            leaves.append(prefix + key)
    return leaves


def test_every_value_is_documented_in_values_yaml_and_the_readme():
    schema = json.loads((CHART / "values.schema.json").read_text())
    docs = value_docs((CHART / "values.yaml").read_text(), schema)
    leaves = schema_leaves(schema)
    assert len(leaves) > 50
    assert [key for key in leaves if not docs.get(key)] == []
    readme = (CHART / "README.md").read_text()
    for key in leaves:
        assert f"| `{key}` |" in readme
