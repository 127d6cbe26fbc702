"""Every dashboard query parses in a real Prometheus and returns data from the simulated fleet."""

import time

import pytest

from alerts.rules import RULES_PATH
from dashboards.build import specs
from tests.conftest import REPO, run_exporter
from tests.servers import run_prometheus, scrape_config
from tests.test_cli import cli

pytestmark = pytest.mark.e2e

#: Scenarios that give the fault-only panels something to show, each on its own GPU.
SCENARIOS = {
    "thermal_throttle": "thermal_throttle:gpu=1",
    "memory_leak": "memory_leak:gpu=2,ramp=600",
    "xid": "xid:gpu=3,code=13,every=2",
}

#: What the test runs: panels that need anything else (the harness) are only parsed.
RUNNING = {None, "processes", "mig"}

#: Dashboard variables as Grafana would expand them with "All" selected.
VARIABLES = {
    "$__rate_interval": "5s",
    "$__range": "1m",
    "$cluster": ".*",
    "$node": ".*",
    "$job": ".*",
    "$gpu": ".*",
    "$engine": ".*",
    "$model": ".*",
}


def expand(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def test_every_panel_query_parses_and_returns_data_and_previews_draw(tmp_path):
    args = ["--backend=simulated", "--collect.interval=0.5", "--collect.processes"]
    args += ["--simulate.mig=1"]
    args += [f"--simulate.scenario={s}" for s in SCENARIOS.values()]
    with (
        run_exporter(*args) as exporter,
        run_prometheus(
            tmp_path,
            [scrape_config("gpu-inference-exporter", [exporter.url])],
            rule_files=[REPO / RULES_PATH],  # the panels read the alerts' recording rules
        ) as prom,
    ):
        prom.wait_for_samples('increase(gpu_xid_errors_total{xid="13"}[1m]) > 0')
        time.sleep(6)  # enough samples for the 5s rate windows
        failures, checked = [], 0
        for spec in specs():
            for panel in spec.panels:
                for query in panel.queries:
                    answer = prom.query(expand(query.expr))
                    where = f"{spec.uid} / {panel.title}: {query.expr}"
                    if answer.get("status") != "success":
                        failures.append(f"{where} does not parse: {answer.get('error')}")
                        continue
                    checked += 1
                    if panel.needs in RUNNING and not answer["data"]["result"]:
                        failures.append(f"{where} returned no data")
        preview = cli(
            "dashboards", "preview", f"--prometheus={prom.url}", f"--out={tmp_path / 'png'}",
            "--range=30s", "--rate-interval=5s", "--allow-empty",
        )  # fmt: skip
        strict = cli(
            "dashboards", "preview", f"--prometheus={prom.url}", f"--out={tmp_path / 'strict'}",
            "--range=30s", "--rate-interval=5s",
        )  # fmt: skip
    assert not failures, "\n".join(failures)
    assert checked > 60
    assert preview.returncode == 0, preview.stderr
    # without the harness, the inference dashboard has nothing to show: skipped, not drawn
    assert preview.stderr == "skipped LLM inference: no panel has data\n"
    assert strict.returncode == 1 and "no data for any panel of LLM inference" in strict.stderr
    assert not (tmp_path / "strict").exists()
    for spec in specs():
        if spec.uid == "llm-inference":
            assert not (tmp_path / "png" / f"{spec.uid}.png").exists()
            continue
        png = tmp_path / "png" / f"{spec.uid}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000  # panels drawn, not an empty canvas
