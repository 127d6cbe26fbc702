"""The example Alertmanager config: amtool accepts it, routes each severity where it should
go, reads PagerDuty routing keys from files, and inhibits as designed."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from alerts.alertmanager import (
    ALERTMANAGER_PATH,
    AlertmanagerOptions,
    alertmanager_config,
    render_alertmanager,
)
from tests.conftest import REPO

CONFIG = REPO / ALERTMANAGER_PATH


def amtool() -> str:
    path = shutil.which("amtool")
    assert path, "amtool missing: scripts/test installs Debian's prometheus-alertmanager package"
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([amtool(), *args], capture_output=True, text=True, timeout=60)


def test_amtool_check_config_is_clean():
    out = run("check-config", str(CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    assert "4 receivers" in out.stdout
    rules = len(alertmanager_config()["inhibit_rules"])
    assert f"{rules} inhibit rules" in out.stdout and rules > 5


def test_a_config_for_other_endpoints_and_secrets_is_valid_too(tmp_path):
    options = AlertmanagerOptions(
        pagerduty_url="http://127.0.0.1:9/v2/enqueue",
        critical_routing_key_file="/run/secrets/pd-critical",
        warning_routing_key_file="/run/secrets/pd-warning",
        watchdog_url="http://127.0.0.1:9/ping",
    )
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager(options))
    out = run("check-config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    receivers = {r["name"]: r for r in yaml.safe_load(path.read_text())["receivers"]}
    assert receivers["pagerduty-critical"]["pagerduty_configs"][0]["url"] == (
        "http://127.0.0.1:9/v2/enqueue"
    )
    assert receivers["watchdog"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/ping"


MIXIN = "mixin=gpu-inference-exporter"


@pytest.mark.parametrize(
    "labels,receiver",
    [
        (["alertname=GpuLost", "severity=critical", "gpu=3", MIXIN], "pagerduty-critical"),
        (["alertname=GpuMemoryHigh", "severity=critical", MIXIN], "pagerduty-critical"),
        (["alertname=GpuMemoryHigh", "severity=warning", MIXIN], "pagerduty-warning"),
        (["alertname=InferenceQueueBacklog", "severity=warning", MIXIN], "pagerduty-warning"),
        (["alertname=GpuXidError", "severity=info", "xid=63", MIXIN], "null"),  # never pages
        (["alertname=Watchdog", "severity=none", MIXIN], "watchdog"),
        # someone else's alerts reaching this Alertmanager never page through this config
        (["alertname=KubePodCrashLooping", "severity=critical"], "null"),
        (["alertname=Watchdog", "severity=none"], "null"),
        (["alertname=GpuLost", "severity=critical"], "null"),
    ],
)
def test_amtool_routes_each_severity_to_its_receiver(labels, receiver):
    out = run(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == receiver


def test_amtool_routes_test_fails_for_the_wrong_receiver():
    out = run(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "--verify.receivers=pagerduty-warning",
        "alertname=GpuLost",
        "severity=critical",
        MIXIN,
    )
    assert out.returncode == 1
    assert out.stdout.strip().startswith("pagerduty-critical")


def test_pagerduty_keys_come_from_files_and_the_payload_from_firing_alerts():
    text = CONFIG.read_text()
    assert "routing_key:" not in text and "service_key" not in text
    config = yaml.safe_load(text)
    pagerduty = [c for r in config["receivers"] for c in r.get("pagerduty_configs", [])]
    assert len(pagerduty) == 2
    files = {c["routing_key_file"] for c in pagerduty}
    assert len(files) == 2 and all(f.startswith("/etc/alertmanager/secrets/") for f in files)
    for c in pagerduty:
        assert c["send_resolved"] is True
        assert c["url"] == "https://events.pagerduty.com/v2/enqueue"
        assert '"critical"' in c["severity"] and '"warning"' in c["severity"]
        assert "CommonLabels.node" in c["source"]
        assert {"component", "group", "class"} <= set(c)
        assert {"cluster", "gpu", "uuid", "node", "value"} <= set(c["details"])
        assert [link["text"] for link in c["links"]] == ["Runbook", "Dashboard"]
        # a resolved alert of the group never lends its link or summary to the page
        for link in c["links"]:
            assert ".Alerts.Firing" in link["href"] and "index .Alerts 0" not in link["href"]
        assert "range $i, $a := .Alerts.Firing" in c["description"]
        assert "range .Alerts.Firing" in c["details"]["descriptions"]


def test_groups_and_inhibitions_use_identity_that_survives_a_rollout():
    config = alertmanager_config()
    group_by = config["route"]["group_by"]
    assert {"cluster", "node", "uuid"} <= set(group_by)
    assert not {"instance", "pod"} & set(group_by)
    for rule in config["inhibit_rules"]:
        assert not {"instance", "pod"} & set(rule["equal"]), rule
        # only this project's alerts (or its fleet alert) inhibit or get inhibited
        assert any("mixin" in m or "GpuFleetWideFault" in m for m in rule["source_matchers"])


def test_a_lost_gpu_or_a_blind_node_silences_the_rest_of_that_gpu_and_node():
    rules = alertmanager_config()["inhibit_rules"]
    gpu = [r for r in rules if any("GpuLost" in m for m in r["source_matchers"])]
    assert any(r["equal"] == ["cluster", "node", "uuid"] for r in gpu)  # the GPU's alerts
    inference = [r for r in gpu if any("component=~" in m for m in r["target_matchers"])]
    assert inference and inference[0]["equal"] == ["cluster", "node"]  # and the node's engines
    node = [r for r in rules if any("GpuExporterSourceDown" in m for m in r["source_matchers"])]
    assert any('severity="critical"' in r["source_matchers"] for r in node)


def test_a_fleet_wide_fault_silences_its_per_node_copies_in_the_cluster():
    rules = alertmanager_config()["inhibit_rules"]
    fleet = {
        m.split('"')[1]: r for r in rules for m in r["source_matchers"] if m.startswith("problem=")
    }
    assert {"GpuLost", "GpuXidError", "GpuNvlinkDown", "GpuMissing"} <= set(fleet)
    for name, rule in fleet.items():
        assert rule["target_matchers"] == [f'alertname="{name}"']
        assert rule["equal"] == ["cluster"]
