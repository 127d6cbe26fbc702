"""The thresholds config: the defaults the issue sets, YAML overrides, durations, scaling."""

from __future__ import annotations

import dataclasses

import pytest

from alerts import thresholds
from alerts.thresholds import DEFAULTS, Duration, Thresholds, from_mapping, load


def test_the_defaults_are_the_post_mortem_numbers():
    t = DEFAULTS
    assert (t.gpu_memory_used.warning.threshold, t.gpu_memory_used.warning.for_) == (
        0.75,
        Duration(180),
    )
    assert (t.gpu_memory_used.critical.threshold, t.gpu_memory_used.critical.for_) == (
        0.90,
        Duration(30),
    )
    assert t.gpu_memory_filling.horizon == Duration(900)
    assert (t.gpu_temperature.warning.threshold, str(t.gpu_temperature.warning.for_)) == (85, "5m")
    assert (t.gpu_temperature.critical.threshold, str(t.gpu_temperature.critical.for_)) == (
        90,
        "1m",
    )
    assert str(t.gpu_clock_slowdown.for_) == "5m"
    assert str(t.gpu_power_at_limit.for_) == "15m"
    assert set(t.gpu_xid.critical_codes) == {48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120}
    assert (t.torch_fragmentation.warning.threshold, str(t.torch_fragmentation.warning.for_)) == (
        0.3,
        "10m",
    )
    assert (
        t.torch_fragmentation.critical.threshold,
        str(t.torch_fragmentation.critical.for_),
    ) == (0.5, "5m")
    assert (t.inference_kv_cache.warning.threshold, str(t.inference_kv_cache.warning.for_)) == (
        0.8,
        "5m",
    )
    assert (t.inference_kv_cache.critical.threshold, str(t.inference_kv_cache.critical.for_)) == (
        0.9,
        "1m",
    )
    assert (
        t.inference_request_p99.warning.threshold,
        t.inference_request_p99.critical.threshold,
    ) == (
        5,
        10,
    )
    assert (
        t.inference_error_ratio.warning.threshold,
        t.inference_error_ratio.critical.threshold,
    ) == (
        0.01,
        0.02,
    )
    assert str(t.inference_rate_window) == "5m"
    assert set(t.inference_error_outcomes) == {"shed", "timeout", "error"}
    assert str(t.inference_queue_growing.for_) == "10m"
    assert t.inference_preemptions.threshold == 1
    assert t.inference_engine_stuck.threshold == 0.1
    assert load(None) is DEFAULTS


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
        "  warning: {threshold: 1.5}\n"
        "gpu_xid:\n"
        "  critical_codes: [79, 48]\n"
        "links:\n"
        "  dashboard_base_url: https://grafana.example.org/\n"
    )
    t = load(path)
    assert t.gpu_temperature.critical.threshold == 92
    assert t.gpu_temperature.critical.for_ == Duration(120)
    assert t.gpu_temperature.warning == DEFAULTS.gpu_temperature.warning
    assert t.inference_ttft_p99.warning.threshold == 1.5
    assert t.inference_ttft_p99.warning.for_ == DEFAULTS.inference_ttft_p99.warning.for_
    assert t.gpu_xid.critical_codes == (79, 48)
    assert t.links.dashboard_url("gpu-fleet") == "https://grafana.example.org/d/gpu-fleet"
    assert t.gpu_memory_used == DEFAULTS.gpu_memory_used


@pytest.mark.parametrize(
    "data,message",
    [
        ({"gpu_temp": 1}, "unknown key 'gpu_temp'"),
        ({"gpu_temperature": {"critical": {"treshold": 1}}}, "gpu_temperature.critical.treshold"),
        ({"gpu_temperature": {"critical": {"threshold": "hot"}}}, "expected a number"),
        ({"gpu_temperature": {"critical": {"threshold": 80}}}, "below the warning"),
        ({"gpu_lost": {"for": "soon"}}, "gpu_lost.for"),
        ({"gpu_xid": {"critical_codes": ["79"]}}, "whole numbers"),
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
