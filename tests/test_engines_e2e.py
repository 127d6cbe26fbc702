"""End to end on 127.0.0.1: the canary (the exporter with its harness under synthetic load, on the
simulated fleet), a vLLM stand-in and an SGLang stand-in (tests/engine_standins.py: the engines'
real names, labels and buckets) scraped by one real Prometheus with the generated rules (every
duration scaled by 1/60). Every query of the LLM dashboard returns data for each engine that
provides what it reads, and nothing for one that does not; a KV cache saturated on the canary
and on the vLLM stand-in fires the same alert, and a vLLM stand-in that hangs fires the stuck
engine alert, with the engine's identity and no page for the healthy SGLang server.
"""

from __future__ import annotations

import re

import pytest

from alerts.rules import render_rules
from alerts.thresholds import DEFAULTS, from_mapping
from dashboards.build import specs
from dashboards.inference import UID
from exporter.engines import ENGINES, Figure
from tests.conftest import run_exporter
from tests.engine_standins import SGLANG_MODEL, VLLM_MODEL, SglangStandIn, VllmStandIn, serve
from tests.servers import Prometheus, run_prometheus, scrape_config
from tests.test_alerts_e2e import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.time_limit(240)]

SCALE = 1 / 60
#: KV-cache levels the canary's tiny cache passes under its synthetic load (it sheds at 90%),
#: and a healthy stand-in (40%) does not; every window and `for` scaled: 5m → 5s.
THRESHOLDS = from_mapping(
    {
        "inference_kv_cache": {
            "tiers": {"warning": {"threshold": 0.5}, "critical": {"threshold": 0.6}}
        }
    },
    DEFAULTS,
).scaled(SCALE)
CLUSTER = "e2e"
NODES = {"canary": "gpu-node-c", "vllm": "gpu-node-v", "sglang": "gpu-node-s"}
MODELS = {"canary": "tiny", "vllm": VLLM_MODEL, "sglang": SGLANG_MODEL}
DEADLINE = 60.0


def _target(job: str, url: str, node: str = "") -> dict:
    """A scrape job labelled as the chart's PodMonitor labels an engine's target (the exporter
    labels its own series with its node and cluster)."""
    config = scrape_config(job, [url])
    labels = {"namespace": "llm"} | ({"node": node, "cluster": CLUSTER} if node else {})
    config["static_configs"][0]["labels"] = labels
    return config


def _expand(expr: str, engine: str) -> str:
    values = {"$cluster": CLUSTER, "$node": ".*", "$job": ".*", "$engine": engine, "$model": ".*"}
    for var, value in values.items():
        expr = expr.replace(var, value)
    return expr


def figures_read(expr: str) -> set[Figure]:
    """The layer's figures a panel query reads (its own series or the rules over them)."""
    return {
        f
        for f in Figure
        if re.search(rf"inference[:_]{f}(:|_bucket|_count|_within)", expr)
        or (f is Figure.REQUEST_ERRORS and "inference_request_errors" in expr)
    }


def _alerts(prom: Prometheus) -> list[dict]:
    return prom.api("alerts")["data"]["alerts"]


def _firing(prom: Prometheus, alertname: str, engine: str, severity: str) -> dict | None:
    for a in _alerts(prom):
        labels = a["labels"]
        if (labels["alertname"], labels.get("engine"), labels["severity"]) == (
            alertname,
            engine,
            severity,
        ) and a["state"] == "firing":
            return labels
    return None


def test_every_engine_fills_the_dashboard_and_pages_through_the_same_rules(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(THRESHOLDS))
    exporter_args = ["--backend=simulated", "--simulate.gpus=1", "--collect.interval=0.2"]
    # long requests into a 1 MiB KV cache: the canary runs it near its shedding point
    exporter_args += ["--harness.kv-cache-memory=1MiB", "--harness.load=30"]
    exporter_args += ["--harness.load.prompt-tokens=uniform:150,200"]
    exporter_args += ["--harness.load.max-tokens=uniform:100,200"]
    exporter_args += [f"--label=node={NODES['canary']}", f"--label=cluster={CLUSTER}"]
    vllm, sglang = VllmStandIn(), SglangStandIn()
    with (
        serve(vllm) as vllm_url,
        serve(sglang) as sglang_url,
        run_exporter(*exporter_args, harness=True) as exporter,
        run_prometheus(
            tmp_path,
            [
                _target(THRESHOLDS.exporter_job, exporter.url),
                _target("vllm", vllm_url.url, NODES["vllm"]),
                _target("sglang", sglang_url.url, NODES["sglang"]),
            ],
            rule_files=[rules],
        ) as prom,
    ):
        for engine in NODES:  # each engine's latencies, through the layer
            p99 = f'engine:inference_time_to_first_token_seconds:p99{{engine="{engine}"}} >= 0'
            wait_for(
                lambda q=p99: prom.query(q)["data"]["result"],
                f"a p99 time to first token of {engine}",
                timeout=DEADLINE,
            )
        running = prom.query("inference:requests_running:sum")["data"]["result"]
        identity = {
            r["metric"]["engine"]: (r["metric"]["node"], r["metric"].get("model")) for r in running
        }
        assert identity == {e: (NODES[e], MODELS[e]) for e in NODES}

        # every panel query: data for each engine that provides what it reads, none otherwise
        failures, checked = [], 0
        (dashboard,) = [s for s in specs(THRESHOLDS) if s.uid == UID]
        for panel in dashboard.panels:
            for query in panel.queries:
                needs = figures_read(query.expr)
                assert needs, query.expr
                for e in ENGINES:
                    answer = prom.query(_expand(query.expr, e.name))
                    assert answer["status"] == "success", (query.expr, answer)
                    got = bool(answer["data"]["result"])
                    want = needs <= set(e.provides)
                    checked += 1
                    if got != want:
                        failures.append(f"{panel.title} / {e.name}: data {got}: {query.expr}")
        assert not failures, "\n".join(failures)
        assert checked >= 3 * 20

        # faults: the vLLM stand-in's KV cache fills and its engine hangs
        canary_kv = wait_for(
            lambda: _firing(prom, "InferenceKvCacheHigh", "canary", "critical"),
            "the canary's KV cache alert",
        )
        with vllm.lock:
            vllm.traffic.kv = 0.95
            vllm.traffic.hung = True
        vllm_kv = wait_for(
            lambda: _firing(prom, "InferenceKvCacheHigh", "vllm", "critical"),
            "the vLLM stand-in's KV cache alert",
        )
        stuck = wait_for(
            lambda: _firing(prom, "InferenceEngineStuck", "vllm", "critical"),
            "the vLLM stand-in's stuck-engine alert",
        )
        sglang_alerts = [
            a["labels"] for a in _alerts(prom) if a["labels"].get("engine") == "sglang"
        ]
    assert set(vllm_kv) == set(canary_kv) == set(stuck)  # the same rules, the same identity
    for labels, engine in ((canary_kv, "canary"), (vllm_kv, "vllm"), (stuck, "vllm")):
        assert (labels["node"], labels["model"], labels["cluster"], labels["namespace"]) == (
            NODES[engine],
            MODELS[engine],
            CLUSTER,
            "llm",
        )
        assert labels["scope"] == "engine" and "instance" not in labels and "pod" not in labels
    assert stuck["job"] == vllm_kv["job"] == "vllm"
    assert sglang_alerts == []  # the healthy SGLang server pages nothing
    assert exporter.process.returncode == 0
