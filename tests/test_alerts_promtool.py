"""The on-call scenario suite: the generated rules pass `promtool check rules`, and the stories in
alerts/tests/ (hand-written promtool unit tests, one incident each) pass, tell their story, and
together fire every alert at each of its tiers, keep every alert quiet somewhere and compare the
exact rendered annotations of every firing case."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from alerts.definitions import GROUPS, all_alerts
from alerts.rules import GROUP_PREFIX, RULES_PATH, render_rules
from alerts.thresholds import DEFAULTS, from_mapping, load
from tests.conftest import REPO

TESTS_DIR = REPO / "alerts" / "tests"
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))
SCOPED_DIR = TESTS_DIR / "scoped"
RULE_FILES = {"../generated/rules.yml", "scoped/rules.yml"}
ANNOTATIONS = {"summary", "description", "value", "runbook_url", "dashboard_url"}
#: Recording rules first (the alerts read them), the fleet rule last (it reads ALERTS).
GROUP_ORDER = [f"{GROUP_PREFIX}.{g}" for g in ("recording", *GROUPS)]
MIN_STORIES = 30


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: scripts/test installs Debian's prometheus package"
    return path


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _stories() -> list[tuple[Path, dict]]:
    out = []
    for path in TEST_FILES:
        data = yaml.safe_load(path.read_text())
        out += [(path, test) for test in data["tests"]]
    return out


def _cases() -> list[dict]:
    return [case for _, test in _stories() for case in test.get("alert_rule_test", [])]


@pytest.mark.parametrize("rules", [RULES_PATH, "alerts/tests/scoped/rules.yml"])
def test_promtool_check_rules_is_clean(rules):
    out = run("check", "rules", rules)
    assert out.returncode == 0, out.stdout + out.stderr
    alerting = sum(len(a.tiers) for a in all_alerts(DEFAULTS))
    found = int(out.stdout.split("SUCCESS: ")[1].split()[0])
    assert found > alerting  # every alerting rule, plus the recording rules
    assert "WARNING" not in out.stdout + out.stderr


def test_every_story_passes_promtool():
    """One promtool per file, side by side (the slow files hold hours of history)."""
    assert TEST_FILES, "no promtool test files in alerts/tests"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda p: run("test", "rules", str(p)), TEST_FILES))
    failed = [r.stdout + r.stderr for r in results if r.returncode or "SUCCESS" not in r.stdout]
    assert not failed, "\n".join(failed)


def test_the_scoped_rules_are_not_stale():
    expected = render_rules(load(SCOPED_DIR / "thresholds.yml"))
    assert (SCOPED_DIR / "rules.yml").read_text() == expected, (
        "alerts/tests/scoped/rules.yml is stale: regenerate it (see scoped/thresholds.yml)"
    )
    assert load(SCOPED_DIR / "thresholds.yml").scopes, "the scoped stories need scopes"


def test_every_file_reads_a_generated_rule_file_in_a_fixed_group_order():
    for path in TEST_FILES:
        data = yaml.safe_load(path.read_text())
        assert len(data["rule_files"]) == 1 and data["rule_files"][0] in RULE_FILES, path
        assert data.get("group_eval_order") == GROUP_ORDER, (
            f"{path.name}: without group_eval_order promtool evaluates the groups in a random "
            "order and an alert may read last step's recording rule"
        )


def test_there_are_enough_stories_and_each_tells_its_story():
    """Every test group is preceded by a comment that tells what happened, what pages (tier,
    labels) and what must stay silent."""
    total = 0
    for path in TEST_FILES:
        lines = path.read_text().splitlines()
        starts = [i for i, line in enumerate(lines) if re.match(r"  - interval: ", line)]
        assert starts, path
        for start in starts:
            block = []
            for line in reversed(lines[:start]):
                if not line.startswith("  #"):
                    break
                block.insert(0, line[3:].strip())
            text = " ".join(block)
            where = f"{path.name}:{start + 1}"
            assert len(block) >= 4, f"{where}: a story needs a comment telling it"
            assert re.search(r"(^|\s)Pages: \S", text), f"{where}: no 'Pages:' line"
            assert re.search(r"(^|\s)Silent: \S", text), f"{where}: no 'Silent:' line"
        total += len(starts)
    assert total == len(_stories())
    assert total >= MIN_STORIES, f"{total} stories, want at least {MIN_STORIES}"


@pytest.mark.parametrize("alert", all_alerts(DEFAULTS), ids=lambda a: a.name)
def test_every_alert_fires_at_each_tier_and_stays_quiet_somewhere(alert):
    cases = [c for c in _cases() if c["alertname"] == alert.name]
    fired = {e["exp_labels"]["severity"] for c in cases for e in c.get("exp_alerts") or []}
    assert fired == {t.severity for t in alert.tiers}, f"{alert.name}: tiers fired {fired}"
    if alert.name != "Watchdog":  # always fires, by design
        quiet = [c for c in cases if not c.get("exp_alerts")]
        assert quiet, f"{alert.name}: no story where it must stay quiet"


def test_every_firing_case_compares_the_exact_annotations_and_identity_labels():
    firing = [(c, e) for c in _cases() for e in c.get("exp_alerts") or []]
    assert firing
    for case, expected in firing:
        name = case["alertname"]
        assert set(expected.get("exp_annotations") or {}) == ANNOTATIONS, (
            f"{name} at {case['eval_time']}: compare every annotation"
        )
        labels = expected["exp_labels"]
        assert not {"instance", "pod"} & set(labels), (
            f"{name} at {case['eval_time']}: an alert keeps identity labels, never instance "
            "or pod (a rollout changes them)"
        )
        assert labels.get("mixin") == "gpu-inference-exporter", name


def test_the_input_series_carry_the_labels_of_a_real_scrape():
    """Target labels on every series (job, instance: what a rollout changes), and a GPU's
    identity on every per-GPU series: the rules must cope with them, not with bare series."""
    gpu_families = {"gpu_up", "gpu_memory_used_bytes", "gpu_xid_errors_total"}
    for path, test in _stories():
        for item in test["input_series"]:
            name, _, body = item["series"].partition("{")
            labels = dict(re.findall(r'(\w+)="([^"]*)"', body))
            where = f"{path.name}: {item['series']}"
            assert {"job", "instance", "cluster"} <= set(labels), where
            if name in gpu_families:
                assert {"gpu", "uuid", "node"} <= set(labels), where


def test_the_stories_catch_a_changed_threshold(tmp_path):
    """The expectations are written out, not derived: moving a threshold breaks them."""
    (tmp_path / "generated").mkdir()
    (tmp_path / "tests").mkdir()
    changed = from_mapping({"gpu_memory_used": {"warning": {"threshold": 0.7}}})
    (tmp_path / "generated" / "rules.yml").write_text(render_rules(changed))
    data = yaml.safe_load((TESTS_DIR / "memory.yml").read_text())
    data["tests"] = [  # the first story where GpuMemoryHigh warns: enough, and quick
        next(
            t
            for t in data["tests"]
            if any(
                c["alertname"] == "GpuMemoryHigh" and c.get("exp_alerts")
                for c in t["alert_rule_test"]
            )
        )
    ]
    (tmp_path / "tests" / "memory.yml").write_text(yaml.safe_dump(data))
    out = run("test", "rules", "tests/memory.yml", cwd=tmp_path)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    assert "alertname: GpuMemoryHigh" in report
    assert "above 70% for 3m" in report  # the rendered description of the changed rule
