"""The generated rules pass `promtool check rules`, and the hand-written promtool unit tests in
alerts/tests/ pass and cover every alert at every tier, firing and not firing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.definitions import all_alerts
from alerts.rules import RULES_PATH, render_rules
from alerts.thresholds import DEFAULTS, from_mapping
from tests.conftest import REPO

TESTS_DIR = REPO / "alerts" / "tests"
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: scripts/test installs Debian's prometheus package"
    return path


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_is_clean():
    out = run("check", "rules", RULES_PATH)
    assert out.returncode == 0, out.stdout + out.stderr
    rules = sum(len(a.tiers) for a in all_alerts(DEFAULTS))
    assert "SUCCESS" in out.stdout and "rules found" in out.stdout, out.stdout
    found = int(out.stdout.split("SUCCESS: ")[1].split()[0])
    assert found > rules  # every alerting rule, plus the recording rules
    assert "WARNING" not in out.stdout + out.stderr


def test_promtool_unit_tests_pass():
    assert TEST_FILES, "no promtool test files in alerts/tests"
    out = run("test", "rules", *[str(p) for p in TEST_FILES])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(TEST_FILES), out.stdout


def _alert_tests() -> list[dict]:
    cases = []
    for path in TEST_FILES:
        data = yaml.safe_load(path.read_text())
        assert data["rule_files"] == ["../generated/rules.yml"], path
        for test in data["tests"]:
            cases += test.get("alert_rule_test", [])
    return cases


@pytest.mark.parametrize("alert", all_alerts(DEFAULTS), ids=lambda a: a.name)
def test_every_alert_is_tested_firing_at_each_tier_and_not_firing(alert):
    cases = [c for c in _alert_tests() if c["alertname"] == alert.name]
    fired = {e["exp_labels"]["severity"] for c in cases for e in c.get("exp_alerts") or [] if e}
    assert fired == {t.severity for t in alert.tiers}, f"{alert.name}: tiers tested {fired}"
    if alert.name != "Watchdog":  # always fires, by design
        quiet = [c for c in cases if not c.get("exp_alerts")]
        assert quiet, f"{alert.name}: no case where it must not fire (under threshold or `for`)"
    for case in cases:
        for expected in case.get("exp_alerts") or []:
            assert set(expected["exp_annotations"]) == {
                "summary",
                "description",
                "value",
                "runbook_url",
                "dashboard_url",
            }, f"{alert.name}: compare every annotation"


def test_the_unit_tests_catch_a_changed_threshold(tmp_path):
    """The expectations are written out, not derived: moving a threshold breaks them."""
    (tmp_path / "generated").mkdir()
    (tmp_path / "tests").mkdir()
    changed = from_mapping({"gpu_memory_used": {"warning": {"threshold": 0.7}}})
    (tmp_path / "generated" / "rules.yml").write_text(render_rules(changed))
    shutil.copy(TESTS_DIR / "gpu_memory_thermal.yml", tmp_path / "tests")
    out = run("test", "rules", "tests/gpu_memory_thermal.yml", cwd=tmp_path)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    assert "alertname: GpuMemoryHigh" in report
    assert "above 70% for 3m" in report  # the rendered description of the changed rule
