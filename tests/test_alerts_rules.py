"""The rule definitions: built from the catalog, checked for unknown metrics, one name per
condition with both tiers where both apply, annotations and runbooks for every alert."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from alerts import rules
from alerts.definitions import all_alerts, common, recording_rules
from alerts.model import Alert, TierRule
from alerts.rules import RULES_PATH, UnknownMetricError, check_rules, render_rules, rule_groups
from alerts.runbooks import SECTIONS, missing_runbooks, render_index, runbook_path
from alerts.thresholds import DEFAULTS, Duration, Thresholds, from_mapping
from exporter import catalog
from exporter.engines import engine_metrics
from exporter.promql import expression_problems, metric_names, selectors
from tests.conftest import REPO

ALERTS = all_alerts(DEFAULTS)
RECORDED = [r.record for r in recording_rules(DEFAULTS)]

#: Alerts with more than one tier, and their severities.
TIERS = {
    "GpuMemoryHigh": {"warning", "critical"},
    "GpuTemperatureHigh": {"warning", "critical"},
    "GpuXidError": {"critical", "warning", "info"},
    "TorchCudaFragmentationHigh": {"warning", "critical"},
    "InferenceKvCacheHigh": {"warning", "critical"},
    "InferenceErrorBudgetBurn": {"critical", "warning"},
    "InferenceTimeToFirstTokenBudgetBurn": {"critical", "warning"},
    "InferenceTimePerOutputTokenBudgetBurn": {"critical", "warning"},
    "GpuExporterMissing": {"warning", "critical"},
    "GpuExporterSourceDown": {"critical", "warning"},
}


# --- the PromQL name check ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr,names",
    [
        (
            "gpu_memory_used_bytes / gpu_memory_total_bytes > 0.75",
            ["gpu_memory_used_bytes", "gpu_memory_total_bytes"],
        ),
        (
            'max without (reason) (gpu_clock_event_active{reason=~"a|b"}) > 0',
            ["gpu_clock_event_active"],
        ),
        ("sum by (le, instance) (rate(x_bucket[5m])) offset 5m", ["x_bucket"]),
        ("a > 0 and on (instance) (max by (instance) (b) < 0.1)", ["a", "b"]),
        ('up{job="a{b}"} == 0', ["up"]),  # braces inside a string are not a selector
        ("histogram_quantile(0.99, rate(y[1h30m]))", ["y"]),
        ("vector(1)", []),
        ("time() - t > 1e3", ["t"]),
        (
            "instance:inference_requests:error_ratio > 0.01",
            ["instance:inference_requests:error_ratio"],
        ),
        ("a unless ignoring (gpu) group_left (name) b", ["a", "b"]),
    ],
)
def test_metric_names_finds_metrics_not_functions_keywords_or_labels(expr, names):
    assert metric_names(expr) == names


def test_selector_label_names_are_read_from_the_matchers():
    (sel,) = selectors('gpu_temperature_celsius{sensor="gpu", gpu!~"1|2"}')
    assert sel.labels == ("sensor", "gpu")


def test_expression_problems_names_unknown_metrics_and_labels():
    assert expression_problems("gpu_memory_used_bytes > 1") == []
    assert expression_problems("inference_request_duration_seconds_bucket > 1") == []
    assert expression_problems('inference_request_duration_seconds_bucket{le="1"} > 1') == []
    assert expression_problems('up{job="x"} == 0') == []
    assert expression_problems("gpu_memory_usedd_bytes > 1") == [
        "gpu_memory_usedd_bytes is neither in the metric catalog, an engine's declared metric, "
        "nor a recording rule"
    ]
    assert expression_problems("inference_request_duration_seconds > 1") != []  # no bare series
    assert expression_problems('gpu_temperature_celsius{sensr="gpu"} > 1') == [
        "gpu_temperature_celsius has no label 'sensr'"
    ]
    assert expression_problems('gpu_up{instance="a",node="b"} == 0') == []
    assert expression_problems("x:y:z > 1", recorded=["x:y:z"]) == []


# --- the definitions ----------------------------------------------------------------------------


def test_every_metric_in_every_expression_is_a_catalog_family_or_a_recording_rule():
    records = recording_rules(DEFAULTS)
    for i, r in enumerate(records):  # a rule reads the catalog, the engines' metrics, or
        # the rules evaluated before it
        assert expression_problems(r.expr, [x.record for x in records[:i]]) == [], r.record
    for alert in ALERTS:
        for tier in alert.tiers:
            assert expression_problems(tier.expr, RECORDED) == [], (alert.name, tier.expr)
    used = {n for a in ALERTS for t in a.tiers for n in metric_names(t.expr)}
    assert {catalog.GPU_MEMORY_USED.name, "inference:kv_cache_utilization:max"} <= used
    check_rules(recording_rules(DEFAULTS), ALERTS)  # and the generator's own check passes


def test_a_rule_naming_a_metric_missing_from_the_catalog_fails_generation(monkeypatch):
    bad = Alert(
        "GpuMemoryTypo",
        "gpu",
        "gpu",
        "Static summary",
        "{{ $value }}",
        "gpu-memory",
        "gpu",
        (TierRule("warning", "gpu_memory_usedd_bytes > 1", Duration(0), "desc", "cond"),),
    )
    with pytest.raises(UnknownMetricError, match=r"GpuMemoryTypo.*gpu_memory_usedd_bytes"):
        check_rules([], [bad])
    monkeypatch.setattr(rules, "all_alerts", lambda t: [*all_alerts(t), bad])
    with pytest.raises(UnknownMetricError, match="gpu_memory_usedd_bytes"):
        render_rules(DEFAULTS)


def test_a_recording_rule_the_alerts_use_must_exist(monkeypatch):
    p99 = "engine:inference_request_duration_seconds:p99"
    monkeypatch.setattr(
        rules, "recording_rules", lambda t: [r for r in recording_rules(t) if r.record != p99]
    )
    with pytest.raises(UnknownMetricError, match=f"{p99} is neither in the metric catalog"):
        rule_groups(DEFAULTS)


def test_one_name_per_condition_with_every_tier_under_it():
    names = [a.name for a in ALERTS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]+", n) for n in names)
    for alert in ALERTS:
        severities = [t.severity for t in alert.tiers]
        assert len(severities) == len(set(severities)), alert.name
        if alert.name in TIERS:
            assert set(severities) == TIERS[alert.name], alert.name
        else:
            assert len(severities) == 1, alert.name
    expected = {
        "GpuMemoryHigh", "GpuMemoryFillingUp", "GpuTemperatureHigh", "GpuClockSlowdown",
        "GpuPowerAtLimit", "GpuLost", "GpuMissing", "GpuRecoveryActionRequired", "GpuXidError",
        "GpuEccUncorrectableErrors", "GpuRowRemapFailure", "GpuRowRemapPending",
        "GpuNvlinkDown", "GpuNvlinkErrorsRising", "GpuPcieReplaysRising",
        "TorchCudaFragmentationHigh", "TorchCudaAllocRetries", "TorchCudaOutOfMemory",
        "InferenceErrorBudgetBurn", "InferenceTimeToFirstTokenBudgetBurn",
        "InferenceTimePerOutputTokenBudgetBurn", "InferenceRequestLatencyHigh",
        "InferenceTimeToFirstTokenHigh", "InferenceTimePerOutputTokenHigh",
        "InferenceErrorRatioHigh", "InferenceKvCacheHigh", "InferenceQueueBacklog",
        "InferencePreemptionsHigh", "InferenceEngineStuck", "InferenceEngineNotReady",
        "GpuExporterDown", "GpuExporterMissing", "GpuExporterSourceDown", "GpuExporterStale",
        "Watchdog", "GpuFleetWideFault",
    }  # fmt: skip
    assert set(names) == expected


def _rules(text: str) -> dict[tuple[str, str], dict]:
    data = yaml.safe_load(text)
    return {
        (r["alert"], r["labels"]["severity"]): r
        for g in data["groups"]
        for r in g["rules"]
        if "alert" in r
    }


def test_the_committed_rule_file_has_the_expected_shape():
    data = yaml.safe_load((REPO / RULES_PATH).read_text())
    groups = {g["name"]: g["rules"] for g in data["groups"]}
    assert list(groups) == [
        "gpu-inference-exporter.recording",
        "gpu-inference-exporter.gpu",
        "gpu-inference-exporter.allocator",
        "gpu-inference-exporter.inference",
        "gpu-inference-exporter.exporter",
        "gpu-inference-exporter.fleet",
    ]
    records = {r["record"]: r["expr"] for r in groups["gpu-inference-exporter.recording"]}
    # service level: sum by (le, ...) before the quantile
    p99 = records["service:inference_time_to_first_token_seconds:p99"]
    assert p99.startswith(
        "histogram_quantile(0.99, sum by (le, cluster, namespace, job, engine, model) "
        "(inference:time_to_first_token_seconds_bucket:rate5m))"
    )
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"service:inference_request_errors:ratio_rate{window}" in records
    by_tier = _rules((REPO / RULES_PATH).read_text())
    memory = by_tier["GpuMemoryHigh", "warning"]
    assert memory["expr"] == (
        "max by (cluster, node, gpu, uuid) (gpu_memory_used_bytes / gpu_memory_total_bytes) > 0.75"
    )
    assert memory["for"] == "3m"
    assert by_tier["GpuMemoryHigh", "critical"]["for"] == "30s"
    assert "for" not in by_tier["Watchdog", "none"]
    assert "keep_firing_for" not in by_tier["Watchdog", "none"]
    for (name, _), rule in by_tier.items():
        labels, notes = rule["labels"], rule["annotations"]
        assert labels["mixin"] == "gpu-inference-exporter", name
        assert labels["component"] in ("gpu", "allocator", "inference", "exporter"), name
        assert "{{" not in notes["summary"], name
        if "absent(" not in rule["expr"] and name != "Watchdog":  # absent() has no labels
            assert "$labels" in notes["description"], name
        assert notes["runbook_url"].endswith(f"/alerts/runbooks/{name}.md"), name
        assert re.search(
            r"/d/(gpu-fleet|gpu-detail|llm-inference|gpu-memory)\b", notes["dashboard_url"]
        )
        if name != "Watchdog" and "max_over_time(" not in rule["expr"][:14]:
            # a rollout's gap does not resolve and re-page (a range latch bridges it itself)
            assert rule.get("keep_firing_for"), name


def test_alerts_keep_only_identity_that_survives_a_rollout():
    """No alert's labels include the pod's instance or name (GpuExporterDown keeps the
    target it failed to scrape): a rollout neither resolves an open incident nor pages it
    again. Per-instance inference alerts read recording rules that aggregated already."""
    exprs = [(a.name, t.expr) for a in ALERTS for t in a.tiers]
    exprs += [(r.record, r.expr) for r in recording_rules(DEFAULTS)]
    for name, expr in exprs:
        if not name.startswith("Inference"):
            assert re.search(
                r"\bby \(|absent\(|^vector\(|^cluster_node|^max_over_time\(cluster_node"
                r"|^inference:",  # the inference layer is at an engine's identity already
                expr,
            ), name
        if name.startswith("job_instance:"):
            continue  # the model each scrape target serves: keyed by the target, joined on it
            # by the inference layer, whose rules keep an engine's identity
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {x.strip() for x in grouping.split(",")}
            assert "pod" not in labels, name
            if name != "GpuExporterDown":
                assert "instance" not in labels, name


def test_latched_faults_follow_a_state_not_a_window():
    by_tier = _rules((REPO / RULES_PATH).read_text())
    for name in (
        "GpuRecoveryActionRequired",
        "GpuEccUncorrectableErrors",
        "GpuRowRemapFailure",
        "GpuRowRemapPending",
        "GpuNvlinkDown",
    ):
        (rule,) = [r for (n, _), r in by_tier.items() if n == name]
        assert "increase(" not in rule["expr"] and "[1d]" not in rule["expr"], name
    # Xid has no state of its own: it holds for hours after an event that needs a reset or a
    # reboot, unless the driver's recovery action says none is needed (then it ends at once)
    critical = by_tier["GpuXidError", "critical"]
    assert critical["expr"].startswith("max_over_time(cluster_node_gpu_xid:")
    assert "[6h]" in critical["expr"] and "gpu_recovery_action == 0" in critical["expr"]
    records = {
        r["record"]: r["expr"]
        for g in yaml.safe_load((REPO / RULES_PATH).read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    xid_critical = records["cluster_node_gpu_xid:gpu_xid_errors_critical:increase"]
    assert "|79|" in xid_critical and "|95|" in xid_critical  # fallen off the bus, uncontained ECC
    assert "|13|" in by_tier["GpuXidError", "warning"]["expr"]  # restart the application


def test_a_scope_moves_matching_series_to_their_own_rule():
    t = from_mapping(
        {
            "scopes": [
                {
                    "name": "preallocating",
                    "selector": 'node=~"vllm-.*"',
                    "alerts": {
                        "gpu_memory_used": {
                            "warning": {"threshold": 0.97},
                            "critical": {"threshold": 0.99},
                        },
                        "gpu_memory_filling": "off",
                    },
                }
            ]
        }
    )
    data = yaml.safe_load(render_rules(t))
    memory = [r for g in data["groups"] for r in g["rules"] if r.get("alert") == "GpuMemoryHigh"]
    default = [r for r in memory if "threshold_scope" not in r["labels"]]
    scoped = [r for r in memory if r["labels"].get("threshold_scope") == "preallocating"]
    assert len(default) == len(scoped) == 2
    for rule in default:
        assert rule["expr"].count('node!~"vllm-.*"') == 2, rule["expr"]
    assert {r["expr"].rsplit(" ", 1)[1] for r in scoped} == {"0.97", "0.99"}
    assert all(r["expr"].count('node=~"vllm-.*"') == 2 for r in scoped)
    (filling,) = [
        r for g in data["groups"] for r in g["rules"] if r.get("alert") == "GpuMemoryFillingUp"
    ]
    assert 'node!~"vllm-.*"' in filling["expr"]  # off for the scope: only the default rule
    with pytest.raises(ValueError, match="no alert reads"):
        render_rules(
            from_mapping(
                {
                    "scopes": [
                        {
                            "name": "x",
                            "selector": 'node="a"',
                            "alerts": {"gpu_temperature_window": 1},
                        }
                    ]
                }
            )
        )


def test_gpu_alerts_describe_the_gpu_the_node_and_the_value():
    for alert in ALERTS:
        if alert.scope != "gpu":
            continue
        for tier in alert.tiers:
            assert "$labels.gpu" in tier.description, alert.name
            assert "$labels.node" in tier.description, alert.name
            value = tier.description + alert.value
            assert "$value" in value or "$labels" in alert.value, alert.name


def test_thresholds_and_links_flow_into_the_rules():
    t = from_mapping(
        {
            "gpu_temperature": {"critical": {"threshold": 92, "for": "2m"}},
            "links": {
                "runbook_base_url": "https://wiki.example.org/runbooks/",
                "dashboard_base_url": "https://grafana.example.org",
                "detail_dashboard": "my-gpu",
            },
        }
    )
    hot = _rules(render_rules(t))["GpuTemperatureHigh", "critical"]
    assert hot["expr"].endswith(" > 92")
    assert hot["for"] == "2m"
    assert "above 92 °C for 2m" in hot["annotations"]["description"]
    assert (
        hot["annotations"]["runbook_url"]
        == "https://wiki.example.org/runbooks/GpuTemperatureHigh.md"
    )
    assert hot["annotations"]["dashboard_url"].startswith("https://grafana.example.org/d/my-gpu?")


def _shape(expr: str) -> str:
    """An expression with its durations and numbers blanked out."""
    return re.sub(r"\d+(\.\d+)?(ms|s|m|h|d|w)?", "N", expr)


def test_scaled_rules_are_the_same_expressions_with_shorter_durations():
    scaled = all_alerts(DEFAULTS.scaled(1 / 60))
    for a, b in zip(ALERTS, scaled, strict=True):
        for ta, tb in zip(a.tiers, b.tiers, strict=True):
            assert _shape(ta.expr) == _shape(tb.expr), a.name
            assert tb.for_.seconds == pytest.approx(ta.for_.seconds / 60, abs=0.001)
    assert "[5s]" in render_rules(DEFAULTS.scaled(1 / 60))
    # the engine's request deadline is not a rule duration: scaling leaves it
    assert DEFAULTS.scaled(1 / 60).inference_limits == DEFAULTS.inference_limits


def test_the_catalog_has_the_inference_families_the_rules_use():
    """The harness adopts these exact entries; the alerts depend on names, kinds and labels."""
    c = catalog
    histograms = {
        c.INFERENCE_TIME_TO_FIRST_TOKEN: (
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120
        ),
        c.INFERENCE_TIME_PER_OUTPUT_TOKEN: (
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
        ),
        c.INFERENCE_REQUEST_DURATION: (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
        c.INFERENCE_QUEUE_DURATION: (
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
        ),
    }  # fmt: skip
    for fam, buckets in histograms.items():
        assert (fam.kind, fam.labels, fam.unit, fam.buckets) == (
            catalog.Kind.HISTOGRAM,
            (),
            "seconds",
            buckets,
        ), fam.name
    assert c.INFERENCE_REQUESTS.name == "inference_requests_total"
    assert c.INFERENCE_REQUESTS.labels == ("outcome",)
    assert c.INFERENCE_KV_CACHE_BLOCKS.labels == ("state",)
    assert c.INFERENCE_MODEL_INFO.labels == ("model", "dtype", "device")
    inference = [n for n in catalog.FAMILIES if n.startswith("inference_")]
    assert sorted(inference) == sorted(
        [
            "inference_time_to_first_token_seconds",
            "inference_time_per_output_token_seconds",
            "inference_request_duration_seconds",
            "inference_queue_duration_seconds",
            "inference_requests_running",
            "inference_requests_waiting",
            "inference_kv_cache_utilization_ratio",
            "inference_kv_cache_fragmentation_ratio",
            "inference_kv_cache_blocks",
            "inference_ready",
            "inference_engine_failed",
            "inference_requests_total",
            "inference_prompt_tokens_total",
            "inference_generation_tokens_total",
            "inference_preemptions_total",
            "inference_model_info",
        ]
    )


# --- runbooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_every_alert_has_a_hand_written_runbook(alert):
    text = runbook_path(alert.name).read_text()
    assert text.startswith(f"# {alert.name}\n")
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == list(SECTIONS), alert.name
    for section in text.split("\n## ")[1:]:
        body = section.split("\n", 1)[1].strip()
        assert len(body) > 80, f"{alert.name}: section {section.split(chr(10))[0]} is a stub"
    for link in re.findall(r"\]\(([A-Za-z]+\.md)\)", text):
        assert (runbook_path(alert.name).parent / link).is_file(), f"{alert.name}: {link}"


def test_the_index_lists_every_tier_and_refuses_an_alert_without_runbook(tmp_path):
    index = render_index(DEFAULTS)
    for alert in ALERTS:
        for tier in alert.tiers:
            assert f"| [{alert.name}]({alert.name}.md) | {tier.severity} |" in index
    assert "memory used / total > 75% for 3m" in index
    assert "| the GPU is reset (the volatile ECC count returns to 0) |" in index
    for alert in ALERTS[1:]:
        runbook_path(alert.name, tmp_path).write_text("# x\n")
    assert missing_runbooks(ALERTS, tmp_path) == [ALERTS[0].name]
    with pytest.raises(ValueError, match=ALERTS[0].name):
        render_index(DEFAULTS, tmp_path)


def test_definitions_only_name_metrics_through_the_catalog():
    """No metric name is typed into the definitions: they come from catalog attributes and the
    engines' declarations."""
    for path in sorted((REPO / "alerts" / "definitions").glob("*.py")):
        keys = "|".join(f.name for f in dataclasses.fields(Thresholds))
        source = re.sub(rf'"({keys})"', "", path.read_text())  # thresholds keys, not metrics
        for name in engine_metrics():
            assert name not in source, f"{name} in {path.name}"
        for name in catalog.FAMILIES:
            # (threshold attributes share some names: `t.gpu_row_remap_pending` is not a metric)
            assert not re.search(rf"(?<![.\w]){name}\b", source), f"{name} in {path.name}"
    assert common.UP == "up"


def test_the_inference_alerts_read_only_the_inference_layer():
    """No engine's own name in an inference alert: the canary, vLLM and SGLang page alike."""
    records = recording_rules(DEFAULTS)
    reads: dict[str, set[str]] = {}
    for r in records:
        reads.setdefault(r.record, set()).update(metric_names(r.expr))
    layer_series = {r.record for r in records if r.record.startswith("inference:")}
    for alert in ALERTS:
        if alert.component != "inference":
            continue
        for tier in alert.tiers:
            for name in metric_names(tier.expr):
                assert name in layer_series or reads[name] <= layer_series, (alert.name, name)
