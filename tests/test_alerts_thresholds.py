"""The thresholds config: the defaults the issue sets, YAML overrides, durations, scaling."""

from __future__ import annotations

import dataclasses

import pytest

from alerts import thresholds
from alerts.thresholds import DEFAULTS, Duration, Thresholds, from_mapping, load


def test_the_defaults_are_the_post_mortem_numbers():
    t = DEFAULTS
    # VRAM: warning 75% for 3m, critical 90% for 30s (preallocating engines get a scope)
    assert (t.gpu_memory_used.warning.threshold, t.gpu_memory_used.warning.for_) == (
        0.75,
        Duration(180),
    )
    assert (t.gpu_memory_used.critical.threshold, t.gpu_memory_used.critical.for_) == (
        0.90,
        Duration(30),
    )
    # predict_linear is paired with a usage guard and a `recent` window shorter than `for`
    fill = t.gpu_memory_filling
    assert fill.min_used == 0.5 and fill.recent.seconds < fill.for_.seconds
    assert (t.gpu_temperature.warning.threshold, str(t.gpu_temperature.warning.for_)) == (85, "5m")
    assert (t.gpu_temperature.critical.threshold, str(t.gpu_temperature.critical.for_)) == (
        90,
        "1m",
    )
    # states that come and go: shares of time
    assert 0 < t.gpu_clock_slowdown.share < 1 and 0 < t.gpu_power_capped.share < 1
    # Xid: NVIDIA's buckets decide the severity
    assert t.gpu_xid.severity_of("RESTART_BM") == "critical"
    assert t.gpu_xid.severity_of("RESET_GPU") == "critical"
    assert t.gpu_xid.severity_of("RESTART_APP") == "warning"
    assert t.gpu_xid.severity_of("IGNORE") == "info"
    # fragmentation needs memory pressure
    assert t.torch_fragmentation.pressure == 0.8 and t.torch_fragmentation.min_stranded_bytes
    # inference: a 99% objective, the workbook's burn windows, a traffic floor
    assert t.inference_slo.objective == 0.99 and t.inference_slo.budget == 0.01
    assert [(str(w.long), str(w.short), w.factor) for w in t.inference_slo.page] == [
        ("1h", "5m", 14.4),
        ("6h", "30m", 6),
    ]
    assert t.inference_slo.min_requests >= 100
    assert str(t.inference_rate_window) == "5m"
    assert set(t.inference_error_outcomes) == {"shed", "timeout", "error"}
    assert load(None) is DEFAULTS


def test_the_engine_limits_are_the_harness_defaults():
    """Thresholds at or above them can never be reached; they must stay in step."""
    from exporter.harness.api.admission import AdmissionLimits

    limits = AdmissionLimits()
    assert DEFAULTS.inference_limits.request_deadline == limits.request_timeout
    assert DEFAULTS.inference_limits.kv_shed_utilization == limits.shed_kv_utilization


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"inference_request_p99": {"threshold": 10}},
            "inference_request_p99: 10s is at or above the request deadline",
        ),
        ({"inference_ttft_p99": {"threshold": 5}}, "inference_ttft_p99: 5s is at or above"),
        ({"inference_ttft_slo": {"target": 5}}, "inference_ttft_slo.target"),
        (
            {"inference_kv_cache": {"tiers": {"critical": {"threshold": 0.9}}}},
            "inference_kv_cache.critical.threshold: 0.9 is at or above the shedding threshold",
        ),
        (
            # a shorter deadline makes the default thresholds unreachable
            {"inference_limits": {"request_deadline": 3}},
            "at or above the request deadline",
        ),
    ],
)
def test_thresholds_the_engine_cannot_reach_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(data)


def test_a_longer_deadline_makes_a_long_latency_threshold_reachable():
    t = from_mapping(
        {"inference_limits": {"request_deadline": 60}, "inference_request_p99": {"threshold": 10}}
    )
    assert t.inference_request_p99.threshold == 10


@pytest.mark.parametrize(
    "data,message",
    [
        ({"gpu_memory_used": {"warning": {"threshold": 75}}}, "gpu_memory_used.warning.threshold"),
        ({"gpu_memory_used": {"critical": {"threshold": 90}}}, "between 0 and 1"),
        ({"gpu_temperature": {"warning": {"threshold": float("nan")}}}, "finite"),
        ({"gpu_temperature": {"critical": {"threshold": float("inf")}}}, "finite"),
        ({"gpu_power_capped": {"share": 1.5}}, "gpu_power_capped.share"),
        ({"inference_slo": {"objective": 99}}, "inference_slo.objective"),
        ({"gpu_temperature": {"warning": {"threshold": 90}}}, "must be below the critical"),
        ({"inference_slo": {"min_requests": -1}}, "must not be negative"),
    ],
)
def test_numbers_must_be_sane_and_the_message_names_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(data)


def test_a_scope_gives_matching_series_their_own_thresholds_or_none():
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
    (scope,) = t.scopes
    assert scope.changed == ("gpu_memory_used",) and scope.disabled == ("gpu_memory_filling",)
    assert scope.thresholds.gpu_memory_used.warning.threshold == 0.97
    assert scope.thresholds.gpu_memory_used.warning.for_ == DEFAULTS.gpu_memory_used.warning.for_
    assert t.gpu_memory_used == DEFAULTS.gpu_memory_used  # the default rule keeps its numbers


@pytest.mark.parametrize(
    "scope,message",
    [
        ({"name": "a", "selector": 'node="x", gpu="1"', "alerts": {"gpu_lost": "off"}}, "one"),
        ({"name": "a", "selector": "node", "alerts": {"gpu_lost": "off"}}, "label matcher"),
        ({"name": "a", "selector": 'node="x"', "alerts": {"links": "off"}}, "not an alert"),
        ({"name": "a", "selector": 'node="x"', "alerts": {}}, "alerts"),
        ({"name": "A b", "selector": 'node="x"', "alerts": {"gpu_lost": "off"}}, "name"),
        (
            {"name": "a", "selector": 'node="x"', "alerts": {"gpu_memory_used": {"warning": 3}}},
            "scopes.a.alerts.gpu_memory_used.warning",
        ),
    ],
)
def test_a_bad_scope_is_refused_with_its_name(scope, message):
    with pytest.raises(ValueError, match=message):
        from_mapping({"scopes": [scope]})


@pytest.mark.parametrize(
    "text,seconds,shown",
    [
        ("30s", 30, "30s"),
        ("5m", 300, "5m"),
        ("1h30m", 5400, "90m"),
        ("500ms", 0.5, "500ms"),
        ("1d", 86400, "1d"),
        (90, 90, "90s"),
        (0, 0, "0s"),
        (1.25, 1.25, "1250ms"),
    ],
)
def test_durations_parse_and_print_the_prometheus_way(text, seconds, shown):
    d = Duration.parse(text)
    assert d.seconds == seconds
    assert str(d) == shown


@pytest.mark.parametrize("bad", ["5 minutes", "5M", "-1s", "", "m", True])
def test_a_bad_duration_is_refused(bad):
    with pytest.raises(ValueError):
        Duration.parse(bad)


def test_a_yaml_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "thresholds.yml"
    path.write_text(
        "gpu_temperature:\n"
        "  critical: {threshold: 92, for: 2m}\n"
        "inference_ttft_p99:\n"
        "  threshold: 1.5\n"
        "inference_error_outcomes: [timeout, error]\n"
        "links:\n"
        "  dashboard_base_url: https://grafana.example.org/\n"
    )
    t = load(path)
    assert t.gpu_temperature.critical.threshold == 92
    assert t.gpu_temperature.critical.for_ == Duration(120)
    assert t.gpu_temperature.warning == DEFAULTS.gpu_temperature.warning
    assert t.inference_ttft_p99.threshold == 1.5
    assert t.inference_ttft_p99.for_ == DEFAULTS.inference_ttft_p99.for_
    assert t.inference_error_outcomes == ("timeout", "error")
    assert t.links.dashboard_url("gpu-fleet") == "https://grafana.example.org/d/gpu-fleet"
    assert t.gpu_memory_used == DEFAULTS.gpu_memory_used


@pytest.mark.parametrize(
    "data,message",
    [
        ({"gpu_temp": 1}, "unknown key 'gpu_temp'"),
        ({"gpu_temperature": {"critical": {"treshold": 1}}}, "gpu_temperature.critical.treshold"),
        ({"gpu_temperature": {"critical": {"threshold": "hot"}}}, "expected a number"),
        ({"gpu_temperature": {"critical": {"threshold": 80}}}, "below the critical"),
        ({"gpu_lost": {"for": "soon"}}, "gpu_lost.for"),
        ({"inference_error_outcomes": [1]}, "expected strings"),
        ({"gpu_temperature": 90}, "expected a mapping"),
        ({"duration_scale": 0}, "greater than 0"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_a_bad_override_names_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        from_mapping(data)


def test_a_bad_file_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("gpu_memory_used: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yml"):
        load(path)


def _durations(value, path=""):
    if isinstance(value, Duration):
        yield path, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _durations(getattr(value, f.name), f"{path}.{f.name}")


def test_scaling_multiplies_every_duration_and_nothing_else():
    scaled = DEFAULTS.scaled(1 / 60)
    before, after = dict(_durations(DEFAULTS)), dict(_durations(scaled))
    assert before.keys() == after.keys() and len(before) > 30
    for key, d in before.items():
        assert after[key].seconds == pytest.approx(d.seconds / 60, abs=0.001), key
    assert str(scaled.gpu_memory_used.critical.for_) == "500ms"
    assert str(scaled.gpu_temperature.warning.for_) == "5s"
    assert scaled.gpu_memory_used.warning.threshold == 0.75
    assert scaled.links == DEFAULTS.links
    assert from_mapping({"duration_scale": 0.5}).gpu_lost.for_ == Duration(30)


def test_the_api_the_dashboards_use_is_documented():
    assert "load(" in (thresholds.__doc__ or "")
    assert thresholds.load.__doc__ and Thresholds.__doc__
    assert DEFAULTS.links.dashboard_url("gpu-memory") == "https://grafana.example.com/d/gpu-memory"
    assert {
        DEFAULTS.links.fleet_dashboard,
        DEFAULTS.links.detail_dashboard,
        DEFAULTS.links.inference_dashboard,
        DEFAULTS.links.memory_dashboard,
    } == {"gpu-fleet", "gpu-detail", "llm-inference", "gpu-memory"}


def test_the_readme_example_is_a_valid_config():
    """alerts/README.md's example (a scope for preallocating engines) loads as written."""
    import yaml

    from tests.conftest import REPO

    text = (REPO / "alerts" / "README.md").read_text()
    block = text.split("# my-thresholds.yml\n", 1)[1].split("```", 1)[0]
    t = from_mapping(yaml.safe_load(block))
    (scope,) = t.scopes
    assert scope.disabled == ("gpu_memory_filling",)  # YAML's `off`
    assert scope.thresholds.gpu_memory_used.critical.threshold == 0.99
