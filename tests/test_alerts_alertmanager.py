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
    assert "2 inhibit rules" in out.stdout and "3 receivers" in out.stdout


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


@pytest.mark.parametrize(
    "labels,receiver",
    [
        (["alertname=GpuLost", "severity=critical", "gpu=3"], "pagerduty-critical"),
        (["alertname=GpuMemoryHigh", "severity=critical"], "pagerduty-critical"),
        (["alertname=GpuMemoryHigh", "severity=warning"], "pagerduty-warning"),
        (["alertname=InferenceQueueGrowing", "severity=warning"], "pagerduty-warning"),
        (["alertname=Watchdog", "severity=none"], "watchdog"),
        (["alertname=SomethingNew", "severity=info"], "pagerduty-warning"),  # the default
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
    )
    assert out.returncode == 1
    assert out.stdout.strip().startswith("pagerduty-critical")


def test_pagerduty_keys_come_from_files_and_the_payload_carries_the_gpu():
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
        assert {"gpu", "uuid", "node", "value"} <= set(c["details"])
        assert [link["text"] for link in c["links"]] == ["Runbook", "Dashboard"]


def test_one_gpu_is_one_incident_and_inhibitions_match_the_same_target():
    config = alertmanager_config()
    assert config["route"]["group_by"] == ["node", "instance", "gpu"]
    tiers, lost = config["inhibit_rules"]
    assert tiers == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["alertname", "node", "instance", "gpu"],
    }
    assert lost == {
        "source_matchers": ['alertname="GpuLost"'],
        "target_matchers": ['alertname!="GpuLost"'],
        "equal": ["node", "instance", "gpu"],
    }
    watchdog = config["route"]["routes"][0]
    assert watchdog["matchers"] == ['alertname="Watchdog"']
    assert watchdog["receiver"] == "watchdog"
