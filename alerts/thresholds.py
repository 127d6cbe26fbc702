"""Every alert threshold and `for` duration in one config, with defaults overridable by YAML.

The alert generator and the dashboards read the same values through this plain Python API::

    from alerts import thresholds
    t = thresholds.load("my-thresholds.yml")     # or load(None) / thresholds.DEFAULTS
    t.gpu_memory_used.warning.threshold          # 0.75 (a used/total ratio)
    t.gpu_memory_used.critical.for_.seconds      # 30.0
    t.links.dashboard_url("gpu-memory")          # base URL + /d/<uid>

A YAML file overrides any subset, by the attribute names below (`for` stands for `for_`)::

    gpu_temperature:
      critical: {threshold: 92, for: 2m}
    inference_ttft_p99:
      warning: {threshold: 1.5}
    links:
      dashboard_base_url: https://grafana.example.org
    duration_scale: 0.0166667   # optional: multiply every duration (end-to-end tests)

Durations are Prometheus durations (`30s`, `5m`, `1h`, `500ms`) or plain seconds.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True, slots=True)
class Duration:
    """A length of time in seconds, written the Prometheus way (`str()` gives `5m`, `500ms`)."""

    seconds: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.seconds) or self.seconds < 0:
            raise ValueError(f"a duration must be finite and not negative, got {self.seconds}")

    @classmethod
    def parse(cls, value: str | float | int | Duration) -> Duration:
        """`5m`, `1h30m`, `500ms`, `90` (seconds) or a Duration → Duration."""
        if isinstance(value, Duration):
            return value
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a duration")
        if isinstance(value, int | float):
            return cls(float(value))
        text = str(value).strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration (use 30s, 5m, 1h, 500ms or seconds)")
        return cls(sum(float(n) * _UNITS[u] for n, u in parts))

    def __str__(self) -> str:
        ms = round(self.seconds * 1000)
        if ms == 0:
            return "0s"
        for unit in ("w", "d", "h", "m", "s"):
            size = round(_UNITS[unit] * 1000)
            if ms % size == 0:
                return f"{ms // size}{unit}"
        return f"{ms}ms"

    def scaled(self, factor: float) -> Duration:
        """This duration times `factor`, rounded to whole milliseconds."""
        return Duration(round(self.seconds * factor * 1000) / 1000)


@dataclass(frozen=True, slots=True)
class Tier:
    """One severity tier: the condition's threshold, held for `for_` before the alert fires."""

    threshold: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class Tiers:
    """A warning and a critical tier of the same condition (critical is the stricter one)."""

    warning: Tier
    critical: Tier

    def __post_init__(self) -> None:
        if self.critical.threshold < self.warning.threshold:
            raise ValueError(
                f"critical threshold {self.critical.threshold:g} is below the warning "
                f"threshold {self.warning.threshold:g}"
            )


@dataclass(frozen=True, slots=True)
class Hold:
    """A state alert: the condition holds for `for_`."""

    for_: Duration


@dataclass(frozen=True, slots=True)
class Increase:
    """A counter rising: its increase over `window` is above `threshold`, held for `for_`."""

    window: Duration
    threshold: float = 0.0
    for_: Duration = Duration(0)


@dataclass(frozen=True, slots=True)
class Rate:
    """A counter's per-second rate over `window` above `threshold`, held for `for_`."""

    window: Duration
    threshold: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class FillPrediction:
    """`predict_linear` over `window` says the resource runs out within `horizon`."""

    window: Duration
    horizon: Duration
    for_: Duration


@dataclass(frozen=True, slots=True)
class ClockSlowdown:
    """Clock event reasons that mean thermal or hardware slowdown, active for `for_`."""

    reasons: tuple[str, ...]
    for_: Duration


@dataclass(frozen=True, slots=True)
class XidCodes:
    """Xid codes that mean a dead or unusable GPU (critical; any other code is a warning)."""

    critical_codes: tuple[int, ...]
    window: Duration


@dataclass(frozen=True, slots=True)
class NvlinkDown:
    """A link down now that was up at some point within `lookback`, for `for_`."""

    lookback: Duration
    for_: Duration


@dataclass(frozen=True, slots=True)
class QueueGrowth:
    """Waiting requests above `min_waiting` whose slope over `window` stays positive."""

    window: Duration
    min_waiting: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class Staleness:
    """The exporter's snapshot older than `after`, for `for_`."""

    after: Duration
    for_: Duration


@dataclass(frozen=True, slots=True)
class Links:
    """Where the runbooks and the Grafana dashboards live (dashboard uids by role)."""

    runbook_base_url: str = (
        "https://github.com/gpu-inference-exporter/gpu-inference-exporter/blob/main/alerts/runbooks"
    )
    dashboard_base_url: str = "https://grafana.example.com"
    fleet_dashboard: str = "gpu-fleet"
    detail_dashboard: str = "gpu-detail"
    inference_dashboard: str = "llm-inference"
    memory_dashboard: str = "gpu-memory"

    def runbook_url(self, alert: str) -> str:
        """The runbook of `alert`: <runbook_base_url>/<alert>.md."""
        return f"{self.runbook_base_url.rstrip('/')}/{alert}.md"

    def dashboard_url(self, uid: str) -> str:
        """The dashboard `uid`: <dashboard_base_url>/d/<uid>."""
        return f"{self.dashboard_base_url.rstrip('/')}/d/{uid}"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every threshold (ratios 0-1, seconds, °C, per second) and duration the alerts use."""

    # GPU memory: used / total.
    gpu_memory_used: Tiers = Tiers(Tier(0.75, Duration(3 * MINUTE)), Tier(0.90, Duration(30)))
    gpu_memory_filling: FillPrediction = FillPrediction(
        window=Duration(15 * MINUTE), horizon=Duration(15 * MINUTE), for_=Duration(5 * MINUTE)
    )
    # GPU die temperature in °C.
    gpu_temperature: Tiers = Tiers(Tier(85, Duration(5 * MINUTE)), Tier(90, Duration(MINUTE)))
    gpu_clock_slowdown: ClockSlowdown = ClockSlowdown(
        ("sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown", "hw_power_brake_slowdown"),
        Duration(5 * MINUTE),
    )
    # Power drawn / enforced power limit.
    gpu_power_at_limit: Tier = Tier(0.98, Duration(15 * MINUTE))
    gpu_lost: Hold = Hold(Duration(MINUTE))
    gpu_xid: XidCodes = XidCodes(
        critical_codes=(48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120),
        window=Duration(5 * MINUTE),
    )
    gpu_ecc_uncorrectable: Increase = Increase(Duration(5 * MINUTE))
    gpu_row_remap_failure: Hold = Hold(Duration(0))
    gpu_row_remap_pending: Hold = Hold(Duration(5 * MINUTE))
    gpu_nvlink_down: NvlinkDown = NvlinkDown(lookback=Duration(DAY), for_=Duration(MINUTE))
    gpu_nvlink_errors: Increase = Increase(Duration(5 * MINUTE), 0, Duration(10 * MINUTE))
    gpu_pcie_replays: Increase = Increase(Duration(5 * MINUTE), 0, Duration(10 * MINUTE))
    # PyTorch caching allocator: inactive split / reserved.
    torch_fragmentation: Tiers = Tiers(
        Tier(0.3, Duration(10 * MINUTE)), Tier(0.5, Duration(5 * MINUTE))
    )
    torch_alloc_retries: Increase = Increase(Duration(5 * MINUTE))
    torch_ooms: Increase = Increase(Duration(5 * MINUTE))
    # Inference harness: the window of the p99 and error-ratio recording rules, then the alerts
    # (latencies in seconds, preemptions per second, engine stuck: GPU utilization below).
    inference_rate_window: Duration = Duration(5 * MINUTE)
    inference_kv_cache: Tiers = Tiers(Tier(0.8, Duration(5 * MINUTE)), Tier(0.9, Duration(MINUTE)))
    inference_request_p99: Tiers = Tiers(
        Tier(5, Duration(10 * MINUTE)), Tier(10, Duration(5 * MINUTE))
    )
    inference_ttft_p99: Tiers = Tiers(Tier(2, Duration(10 * MINUTE)), Tier(5, Duration(5 * MINUTE)))
    inference_tpot_p99: Tiers = Tiers(
        Tier(0.1, Duration(10 * MINUTE)), Tier(0.25, Duration(5 * MINUTE))
    )
    inference_error_ratio: Tiers = Tiers(
        Tier(0.01, Duration(5 * MINUTE)), Tier(0.02, Duration(5 * MINUTE))
    )
    inference_error_outcomes: tuple[str, ...] = ("shed", "timeout", "error")
    inference_queue_growing: QueueGrowth = QueueGrowth(
        window=Duration(5 * MINUTE), min_waiting=0, for_=Duration(10 * MINUTE)
    )
    inference_preemptions: Rate = Rate(Duration(5 * MINUTE), 1, Duration(5 * MINUTE))
    inference_engine_stuck: Tier = Tier(0.1, Duration(5 * MINUTE))
    # The exporter itself.
    exporter_job: str = "gpu-inference-exporter"
    exporter_down: Hold = Hold(Duration(MINUTE))
    exporter_source_down: Hold = Hold(Duration(2 * MINUTE))
    exporter_stale: Staleness = Staleness(after=Duration(MINUTE), for_=Duration(MINUTE))
    links: Links = field(default_factory=Links)

    def scaled(self, factor: float) -> Thresholds:
        """A copy with every duration (`for`, windows, horizons) multiplied by `factor`."""
        if not factor > 0:
            raise ValueError(f"duration_scale must be greater than 0, got {factor}")
        return typing.cast(Thresholds, _scale(self, factor))


DEFAULTS = Thresholds()


def _scale(value: Any, factor: float) -> Any:
    if isinstance(value, Duration):
        return value.scaled(factor)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _scale(getattr(value, f.name), factor) for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    return value


def _key(name: str) -> str:
    return "for" if name == "for_" else name


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Duration:
        return Duration.parse(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if item is int and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"{where}: expected whole numbers, got {value!r}")
        if item is str and not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: expected strings, got {value!r}")
        return tuple(value)
    raise TypeError(f"{where}: unsupported type {hint!r}")  # pragma: no cover - a coding error


def _merge(current: Any, data: Any, where: str) -> Any:
    """`current` (a dataclass) with the keys of the mapping `data` replaced, recursively."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'the config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(current))
    by_key = {_key(f.name): f.name for f in dataclasses.fields(current)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in by_key:
            raise ValueError(f"unknown key {path!r} (valid: {', '.join(by_key)})")
        name = by_key[key]
        old = getattr(current, name)
        if dataclasses.is_dataclass(old) and not isinstance(old, Duration):
            changes[name] = _merge(old, value, path)
        else:
            try:
                changes[name] = _convert(hints[name], value, path)
            except ValueError as exc:
                raise ValueError(str(exc) if path in str(exc) else f"{path}: {exc}") from None
    try:
        return dataclasses.replace(current, **changes)
    except ValueError as exc:
        raise ValueError(f"{where or 'the config'}: {exc}") from None


def from_mapping(data: dict[str, Any] | None, base: Thresholds = DEFAULTS) -> Thresholds:
    """`base` with the overrides in `data` (parsed YAML); `duration_scale` scales afterwards.

    Raises ValueError naming the key for an unknown key or a value of the wrong type.
    """
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"the config must be a mapping of keys to values, got {data!r}")
    data = dict(data or {})
    scale = data.pop("duration_scale", None)
    merged = typing.cast(Thresholds, _merge(base, data, ""))
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(f"duration_scale: expected a number, got {scale!r}")
        merged = merged.scaled(float(scale))
    return merged


def load(path: str | Path | None = None) -> Thresholds:
    """The thresholds: the defaults overridden by the YAML file at `path` (None: defaults)."""
    if path is None:
        return DEFAULTS
    text = Path(path).read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    try:
        return from_mapping(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
