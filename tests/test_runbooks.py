"""The runbooks hold what an on-call needs beyond the four sections: what clears each alert,
paste-ready "one GPU or the whole fleet?" queries that Prometheus accepts and that name only
series that exist, and an Xid table that agrees with NVIDIA's catalog and the rules."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from alerts.definitions import all_alerts, recording_rules
from alerts.definitions.gpu import RECOVERY_ACTIONS
from alerts.runbooks import RUNBOOK_DIR, SECTIONS, runbook_path
from alerts.thresholds import DEFAULTS
from exporter.promql import expression_problems
from exporter.xid_catalog import BUCKETS, codes_in

ALERTS = all_alerts(DEFAULTS)
CLEARS = "### Clears when"
SPREAD = "### One GPU or the whole fleet?"
PROMQL_BLOCK = re.compile(r"^```promql\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _section(text: str, name: str) -> str:
    """The body of `## name`, up to the next `## ` heading."""
    body = text.split(f"\n## {name}\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _queries(text: str) -> list[str]:
    """Every query of the runbook's promql blocks: one per line, `#` lines are comments."""
    lines = [line.strip() for block in PROMQL_BLOCK.findall(text) for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_every_runbook_belongs_to_an_alert():
    names = {a.name for a in ALERTS}
    pages = {p.stem for p in RUNBOOK_DIR.glob("*.md")} - {"README"}
    assert pages - names == set(), "runbooks of alerts that no longer exist"
    assert names - pages == set(), "alerts without a runbook"


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_every_runbook_says_what_clears_it_and_how_far_it_spreads(alert):
    text = runbook_path(alert.name).read_text()
    assert set(SECTIONS) <= set(re.findall(r"^## (.+)$", text, re.MULTILINE))
    meaning, confirm = _section(text, "Meaning"), _section(text, "Confirm")
    assert CLEARS in meaning, f"{alert.name}: no '{CLEARS}' under Meaning"
    assert len(meaning.split(CLEARS, 1)[1].strip()) > 60, f"{alert.name}: '{CLEARS}' is a stub"
    assert SPREAD in confirm, f"{alert.name}: no '{SPREAD}' under Confirm"
    queries = _queries(confirm.split(SPREAD, 1)[1])
    own = f'ALERTS{{alertname="{alert.name}", alertstate="firing"}}'
    assert any(own in q for q in queries), f"{alert.name}: no query counting {own}"
    for severity in {t.severity for t in alert.tiers} - {"none"}:
        assert severity in text.split("## Meaning", 1)[0], f"{alert.name}: tier {severity}"


def test_runbook_queries_name_only_series_and_labels_that_exist():
    recorded = [r.record for r in recording_rules(DEFAULTS)]
    problems = []
    for alert in ALERTS:
        for query in _queries(runbook_path(alert.name).read_text()):
            found = expression_problems(query, recorded)
            problems += [f"{alert.name}: {p}: {query}" for p in found]
    assert problems == []


def test_promtool_accepts_every_runbook_query(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test installs Debian's prometheus package"
    queries = [q for a in ALERTS for q in _queries(runbook_path(a.name).read_text())]
    assert len(queries) >= 2 * len(ALERTS)
    rules = [{"record": f"runbook:query_{i}:check", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "runbook-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]}))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(queries)} rules found" in out.stdout, out.stdout


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(first_cell, cells[0]):
            rows.append(cells)
    return rows


def test_the_xid_table_agrees_with_the_catalog_and_the_rules():
    xid = DEFAULTS.gpu_xid
    keep = {
        "critical": xid.keep_critical,
        "warning": xid.keep_warning,
        "info": DEFAULTS.keep_firing_for,
    }
    rows = _table_rows(runbook_path("GpuXidError").read_text(), r"`[A-Z0-9_]+`")
    buckets = [cells[0].strip("`") for cells in rows]
    assert sorted(buckets) == sorted(BUCKETS), "one row per bucket of the catalog"
    for cells in rows:
        bucket, severity, codes, _, kept = cells[0].strip("`"), *cells[1:]
        assert severity == xid.severity_of(bucket), bucket
        assert [int(c) for c in codes.split(",")] == sorted(codes_in({bucket})), bucket
        assert kept == str(keep[severity]), bucket
    assert xid.unknown_severity in runbook_path("GpuXidError").read_text().split("## Meaning")[0]


def test_the_recovery_action_table_lists_every_action_the_rules_name():
    rows = _table_rows(runbook_path("GpuRecoveryActionRequired").read_text(), r"\d+")
    assert sorted(int(cells[0]) for cells in rows) == sorted(RECOVERY_ACTIONS)
