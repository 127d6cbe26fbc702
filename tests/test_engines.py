"""The engines' declarations (exporter/engines.py): they say what vLLM's and SGLang's /metrics
really hold (checked against stand-ins typed from the engines' sources), `generate` refuses an
engine name that is not declared, and the layer's rules read each engine as it is laid out."""

from __future__ import annotations

import dataclasses
import re
import textwrap

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from alerts import rules
from alerts.definitions import layer, recording_rules
from alerts.model import RecordingRule
from alerts.thresholds import DEFAULTS, LatencySlo, from_mapping
from exporter.catalog import Kind
from exporter.engines import (
    CANARY,
    ENGINES,
    SGLANG,
    VLLM,
    Engine,
    EngineMetric,
    Figure,
    Provision,
    engine_problems,
)
from exporter.engines import engine as engine_by_name  # `engine` names a loop variable here
from exporter.generate import run_generate
from exporter.promql import expression_problems
from tests.conftest import REPO
from tests.engine_standins import SglangStandIn, VllmStandIn


def _exposed(text: str) -> dict[str, tuple[str, set[str], set[float]]]:
    """Exposition text → {metric name as the layer reads it: (type, label names, buckets)}:
    a counter under its `_total` name, a histogram under its base name."""
    out: dict[str, tuple[str, set[str], set[float]]] = {}
    for fam in text_string_to_metric_families(text):
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        labels: set[str] = set()
        buckets: set[float] = set()
        for s in fam.samples:
            labels |= set(s.labels) - {"le"}
            if s.name.endswith("_bucket") and s.labels["le"] != "+Inf":
                buckets.add(float(s.labels["le"]))
        out[name] = (fam.type, labels, buckets)
    return out


def mismatches(engine: Engine, exposition: str) -> list[str]:
    """How the declaration differs from what the engine exposes."""
    exposed = _exposed(exposition)
    problems = []
    for m in engine.metrics:
        if m.name not in exposed:
            problems.append(f"{m.name} is not exposed")
            continue
        kind, labels, buckets = exposed[m.name]
        if kind != str(m.kind):
            problems.append(f"{m.name}: exposed as a {kind}, declared a {m.kind}")
        if labels != set(m.labels):
            problems.append(f"{m.name}: exposed with {sorted(labels)}, declared {m.labels}")
        if buckets != set(m.buckets):
            problems.append(f"{m.name}: exposed buckets {sorted(buckets)}, declared {m.buckets}")
    return problems


STANDINS = {"vllm": VllmStandIn, "sglang": SglangStandIn}


@pytest.mark.parametrize("engine", [VLLM, SGLANG], ids=lambda e: e.name)
def test_the_declarations_name_what_the_engines_expose(engine):
    standin = STANDINS[engine.name]()
    standin.advance(1.0)
    assert mismatches(engine, standin.exposition().decode()) == []


def test_a_typo_in_a_declaration_is_caught_against_the_engine():
    typo = EngineMetric("vllm:num_request_running", Kind.GAUGE, "x", ("model_name", "engine"))
    broken = dataclasses.replace(
        VLLM, provides={**VLLM.provides, Figure.RUNNING: Provision((typo,))}
    )
    standin = VllmStandIn()
    problems = mismatches(broken, standin.exposition().decode())
    assert problems == ["vllm:num_request_running is not exposed"]
    layout = dataclasses.replace(
        VLLM.provides[Figure.TIME_TO_FIRST_TOKEN].metrics[0], buckets=(0.1, 1.0, 2.0)
    )
    broken = dataclasses.replace(
        VLLM, provides={**VLLM.provides, Figure.TIME_TO_FIRST_TOKEN: Provision((layout,))}
    )
    (problem,) = mismatches(broken, standin.exposition().decode())
    assert problem.startswith("vllm:time_to_first_token_seconds: exposed buckets [0.001")


def test_every_declaration_is_sound_and_says_what_it_lacks():
    for engine in ENGINES:
        assert engine_problems(engine) == [], engine.name
        assert set(engine.provides) | set(engine.lacks) == set(Figure), engine.name
    assert Figure.REQUEST_ERRORS in SGLANG.lacks  # said, not silently missing
    assert set(CANARY.provides) == set(Figure)


@pytest.mark.parametrize(
    "change,problem",
    [
        (
            lambda e: {Figure.RUNNING: Provision((EngineMetric("vllm:x", Kind.COUNTER, "x", ()),))},
            "a counter's name, and only a counter's, ends in _total",
        ),
        (
            lambda e: {Figure.RUNNING: Provision((EngineMetric("sglang:x", Kind.GAUGE, "x", ()),))},
            "does not start with vllm:",
        ),
        (
            lambda e: {
                Figure.INTER_TOKEN_LATENCY: Provision(
                    (
                        e.provides[Figure.INTER_TOKEN_LATENCY].metrics[0],
                        dataclasses.replace(
                            e.provides[Figure.INTER_TOKEN_LATENCY].metrics[1], buckets=(0.1, 1.0)
                        ),
                    )
                )
            },
            "differs from vllm:inter_token_latency_seconds in type, labels or buckets",
        ),
    ],
)
def test_a_broken_declaration_is_refused(change, problem):
    broken = dataclasses.replace(VLLM, provides={**VLLM.provides, **change(VLLM)})
    assert any(problem in p for p in engine_problems(broken)), engine_problems(broken)
    lacking = dataclasses.replace(
        VLLM, provides={k: v for k, v in VLLM.provides.items() if k is not Figure.RUNNING}
    )
    assert "vllm: requests_running is neither provided nor said to be lacking" in (
        engine_problems(lacking)
    )


def test_the_promql_check_knows_the_engines_names_and_labels():
    assert expression_problems('vllm:num_requests_running{model_name="m"} > 0') == []
    assert expression_problems("rate(sglang:time_to_first_token_seconds_bucket[5m])") == []
    assert expression_problems('rate(http_requests_total{status="5xx"}[5m])') == []
    assert expression_problems("vllm:num_requests_runing > 0") == [
        "vllm:num_requests_runing is neither in the metric catalog, an engine's declared "
        "metric, nor a recording rule"
    ]
    assert expression_problems('vllm:num_requests_running{model="m"} > 0') == [
        "vllm:num_requests_running has no label 'model'"
    ]
    assert expression_problems("sglang:token_usage_bucket > 0") != []  # a gauge has no buckets


def test_a_typo_in_an_engine_name_fails_generate(monkeypatch, capsys):
    typo = RecordingRule(
        "inference:kv_cache_utilization:max",
        "max by (cluster, node, namespace, job) (vllm:kv_cache_usage_percent)",
        "KV cache",
        (("engine", "vllm"),),
    )
    monkeypatch.setattr(rules, "recording_rules", lambda t: [*recording_rules(t), typo])
    assert run_generate(check=True, root=str(REPO)) == 2
    err = capsys.readouterr().err
    assert "vllm:kv_cache_usage_percent is neither in the metric catalog" in err


def test_every_engine_rule_reads_only_its_own_declared_names():
    own = {e.name: {m.name for m in e.metrics} for e in ENGINES}
    rules_ = layer.layer_rules(DEFAULTS)
    recorded = {r.record for r in rules_}
    joins = [r for r in rules_ if not r.labels]
    assert [r.record for r in joins] == [layer.model_join(CANARY), layer.model_join(VLLM)]
    for rule in rules_:
        engine = dict(rule.labels).get("engine") or rule.record.split(":")[1].split("_")[0]
        assert _names(rule.expr) - recorded <= own[engine], rule
        for name in _names(rule.expr) & recorded:  # its own engine's join, or layer series
            assert name in (layer.model_join(engine_by_name(engine)),) or name.startswith(
                "inference:"
            ), rule
            assert f'{name}{{engine="' not in rule.expr or f'engine="{engine}"' in rule.expr


def _names(expr: str) -> set[str]:
    from exporter.promql import metric_names

    out = set()
    for name in metric_names(expr):
        for suffix in ("_bucket", "_count"):
            name = name.removesuffix(suffix)
        out.add(name)
    return out


def test_a_latency_target_between_two_bounds_is_estimated_and_one_outside_is_refused():
    (rule,) = [
        r
        for r in layer.engine_rules(SGLANG, DEFAULTS)
        if r.record == "inference:time_to_first_token_seconds_within_target:rate1h"
    ]
    # 2.5 s lies between SGLang's 2 s and 4 s bounds: a quarter of the way
    assert 'le=~"2|2\\\\.0"' in rule.expr and 'le=~"4|4\\\\.0"' in rule.expr
    assert rule.expr.count(" * 0.75 + ") == 1 and rule.expr.endswith(" * 0.25")
    (exact,) = [
        r
        for r in layer.engine_rules(VLLM, DEFAULTS)
        if r.record == "inference:time_to_first_token_seconds_within_target:rate1h"
    ]
    assert 'le=~"2\\\\.5"' in exact.expr and "* 0." not in exact.expr
    fast = dataclasses.replace(DEFAULTS, inference_ttft_slo=LatencySlo(0.05, 0.99))
    with pytest.raises(ValueError, match="lies outside the buckets of SGLang"):
        layer.engine_rules(SGLANG, fast)


def test_the_readme_scope_for_engines_full_by_design_loads_and_moves_only_them():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Monitoring vLLM / SGLang with this", 1)[1]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    (block,) = [b for b in blocks if "scopes:" in b]
    config = yaml.safe_load(textwrap.dedent(block))
    t = from_mapping(config)
    data = yaml.safe_load(rules.render_rules(t))
    kv = [r for g in data["groups"] for r in g["rules"] if r.get("alert") == "InferenceKvCacheHigh"]
    scoped = [r for r in kv if r["labels"].get("threshold_scope") == "full-by-design"]
    default = [r for r in kv if "threshold_scope" not in r["labels"]]
    assert {r["for"] for r in scoped} == {"30m", "15m"}
    assert all('engine=~"vllm|sglang"' in r["expr"] for r in scoped)
    assert all('engine!~"vllm|sglang"' in r["expr"] for r in default)
