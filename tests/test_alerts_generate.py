"""`gpu-inference-exporter generate` writes the alert artifacts, `--check` fails when they are
stale, and `--alerts-config FILE` generates them with other thresholds."""

from __future__ import annotations

import shutil

import pytest

from alerts.alertmanager import ALERTMANAGER_PATH
from alerts.rules import RULES_PATH
from alerts.runbooks import INDEX_PATH
from exporter.generate import artifacts
from tests.conftest import REPO
from tests.test_cli import cli

ALERT_ARTIFACTS = (RULES_PATH, ALERTMANAGER_PATH, INDEX_PATH)


def _copy_repo_artifacts(root):
    for rel in ("README.md", *ALERT_ARTIFACTS):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, root / rel)


def test_the_alert_artifacts_are_registered_with_generate():
    assert set(ALERT_ARTIFACTS) <= set(artifacts())


def test_generate_rewrites_a_stale_rule_file_and_check_then_passes(tmp_path):
    _copy_repo_artifacts(tmp_path)
    rules = tmp_path / RULES_PATH
    rules.write_text(rules.read_text().replace("> 0.75", "> 0.8"))
    check = cli("generate", "--check", "--root", str(tmp_path))
    assert check.returncode == 1
    assert f"stale: {RULES_PATH}" in check.stderr
    assert cli("generate", "--root", str(tmp_path)).returncode == 0
    assert rules.read_text() == (REPO / RULES_PATH).read_text()
    assert cli("generate", "--check", "--root", str(tmp_path)).returncode == 0


def test_alerts_config_regenerates_the_rules_and_index_with_its_thresholds(tmp_path):
    _copy_repo_artifacts(tmp_path)
    config = tmp_path / "thresholds.yml"
    config.write_text("gpu_temperature:\n  critical: {threshold: 92, for: 2m}\n")
    root = ["--root", str(tmp_path)]
    check = cli("generate", "--check", *root, "--alerts-config", str(config))
    assert check.returncode == 1
    assert f"stale: {RULES_PATH}" in check.stderr and f"stale: {INDEX_PATH}" in check.stderr
    assert f"stale: {ALERTMANAGER_PATH}" not in check.stderr  # no threshold in it
    wrote = cli("generate", *root, "--alerts-config", str(config))
    assert wrote.returncode == 0, wrote.stderr
    text = (tmp_path / RULES_PATH).read_text()
    assert '(avg_over_time(gpu_temperature_celsius{sensor="gpu"}[2m])) > 92\n    for: 2m' in text
    assert "die temperature (mean over 2m) > 92 °C for 2m" in (tmp_path / INDEX_PATH).read_text()
    assert cli("generate", "--check", *root, "--alerts-config", str(config)).returncode == 0
    # and the committed defaults are what this config is not
    assert cli("generate", "--check", *root).returncode == 1


def test_a_bad_alerts_config_exits_2_with_one_line(tmp_path):
    config = tmp_path / "thresholds.yml"
    config.write_text("gpu_temperatur:\n  critical: {threshold: 92}\n")
    out = cli("generate", "--check", "--alerts-config", str(config))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'gpu_temperatur'" in lines[0], out.stderr
    missing = cli("generate", "--check", "--alerts-config", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2 and "nope.yml" in missing.stderr
    assert "Traceback" not in out.stderr + missing.stderr


@pytest.mark.parametrize(
    "text,says",
    [
        # the harness's own limits make these unreachable: refused, not silently generated
        ("inference_ttft_p99: {threshold: 6}\n", "at or above the request deadline (5s"),
        (
            "inference_kv_cache:\n  tiers:\n    critical: {threshold: 0.95}\n",
            "at or above the shedding threshold",
        ),
        ("gpu_memory_used:\n  warning: {threshold: 75}\n", "a ratio between 0 and 1"),
        ("gpu_temperature:\n  warning: {threshold: .nan}\n", "finite"),
    ],
)
def test_generate_refuses_thresholds_that_cannot_work_in_one_line(tmp_path, text, says):
    config = tmp_path / "thresholds.yml"
    config.write_text(text)
    out = cli("generate", "--check", "--alerts-config", str(config))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and says in lines[0], out.stderr


def test_generate_help_names_the_alerts_config_option():
    out = cli("generate", "--help")
    assert out.returncode == 0
    assert "--alerts-config" in out.stdout and "thresholds" in out.stdout
