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

from exporter import catalog

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
        if not self.warning.threshold < self.critical.threshold:
            raise ValueError(
                f"the warning threshold ({self.warning.threshold:g}) must be below the "
                f"critical threshold ({self.critical.threshold:g})"
            )


@dataclass(frozen=True, slots=True)
class Hold:
    """A state alert: the condition holds for `for_`."""

    for_: Duration


@dataclass(frozen=True, slots=True)
class Lost:
    """A GPU that does not answer for `for_`, or that answers less than `flapping_share` of
    `flapping_window` (a GPU that comes and goes never holds `gpu_up == 0` for long)."""

    for_: Duration
    flapping_window: Duration = Duration(10 * MINUTE)
    flapping_share: float = 0.75


@dataclass(frozen=True, slots=True)
class Increase:
    """A counter rising: its increase over `window` is above `threshold`, held for `for_`."""

    window: Duration
    threshold: float = 0.0
    for_: Duration = Duration(0)


@dataclass(frozen=True, slots=True)
class Rate:
    """A counter's per-second rate over `window` above `threshold`, held for `for_`, counted
    only where at least `min_requests` requests finished in the window (a traffic floor)."""

    window: Duration
    threshold: float
    for_: Duration
    min_requests: float = 0.0


@dataclass(frozen=True, slots=True)
class Smoothed:
    """A gauge averaged over `window` before it is compared with the tiers."""

    window: Duration
    tiers: Tiers


@dataclass(frozen=True, slots=True)
class FillPrediction:
    """Memory running out: at its rate over `window` (`deriv`) free memory reaches 0 within
    `horizon` (the alert's value is that time), it is still shrinking over the last `recent`
    (a model load is a step, not a trend), and more than `min_used` of it is already in use;
    all held for `for_`."""

    window: Duration
    horizon: Duration
    recent: Duration
    min_used: float
    for_: Duration

    def __post_init__(self) -> None:
        if self.recent.seconds >= self.for_.seconds:
            raise ValueError(
                f"recent ({self.recent}) must be shorter than for ({self.for_}): otherwise "
                "the step of a model load fires the alert"
            )


@dataclass(frozen=True, slots=True)
class TimeShare:
    """A state that comes and goes: the share of `window` it was active above `share`."""

    window: Duration
    share: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class ClockSlowdown:
    """Clock event reasons that mean thermal or hardware slowdown, active more than `share`
    of `window` (the share of time, from the exporter's per-reason seconds counters)."""

    reasons: tuple[str, ...]
    window: Duration
    share: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class PowerCapped:
    """Power at or above `ratio` of the enforced limit (or the driver capping clocks for
    power) more than `share` of `window`."""

    ratio: float
    window: Duration
    share: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class XidPolicy:
    """Xid events by NVIDIA's resolution bucket: the severity of each bucket (codes outside
    the table take `unknown_severity`), how long after an event the alert keeps firing when
    no recovery-action state is exported (`keep_firing_for` by severity)."""

    window: Duration
    bucket_severity: tuple[tuple[str, str], ...]
    unknown_severity: str
    keep_critical: Duration
    keep_warning: Duration

    def severity_of(self, bucket: str) -> str:
        return dict(self.bucket_severity).get(bucket, self.unknown_severity)


@dataclass(frozen=True, slots=True)
class GpuCount:
    """GPUs of a node: fewer than its maximum over `lookback`, for `for_`."""

    lookback: Duration
    for_: Duration


@dataclass(frozen=True, slots=True)
class QueueBacklog:
    """Waiting requests that never dropped to `min_waiting` or below during `window`."""

    window: Duration
    min_waiting: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class Stuck:
    """Requests running or waiting the whole `window` and no token generated in it."""

    window: Duration
    for_: Duration


@dataclass(frozen=True, slots=True)
class Fragmentation:
    """Allocator fragmentation tiers, counted only under memory pressure: the GPU's memory
    used above `pressure` and at least `min_stranded_bytes` stranded."""

    tiers: Tiers
    pressure: float
    min_stranded_bytes: float


@dataclass(frozen=True, slots=True)
class BurnWindow:
    """One multi-window burn-rate condition: both windows burn faster than `factor`."""

    long: Duration
    short: Duration
    factor: float


@dataclass(frozen=True, slots=True)
class Slo:
    """A service-level objective on the inference requests (share good over `period`) with
    the multi-window, multi-burn-rate alerts of the SRE workbook: `page` windows fire the
    critical tier, `ticket` windows the warning; `min_requests` finished in the long window
    is the traffic floor under which nothing fires."""

    objective: float
    page: tuple[BurnWindow, ...]
    ticket: tuple[BurnWindow, ...]
    min_requests: float
    page_for: Duration = Duration(2 * MINUTE)
    ticket_for: Duration = Duration(15 * MINUTE)

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 12)


@dataclass(frozen=True, slots=True)
class LatencySlo:
    """A latency objective: `objective` of the requests within `target` seconds (a bucket
    boundary of the histogram)."""

    target: float
    objective: float


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """The engine's own limits (the harness's `serve` defaults): a latency threshold at or
    above the request deadline, or a KV-cache threshold at or above the shedding threshold,
    can never be reached, and `generate` refuses them."""

    request_deadline: float = 5.0  # seconds (not a Duration: duration_scale leaves it)
    kv_shed_utilization: float = 0.9


@dataclass(frozen=True, slots=True)
class Staleness:
    """The exporter's snapshot older than `after`, for `for_`."""

    after: Duration
    for_: Duration


@dataclass(frozen=True, slots=True)
class SourcesDown:
    """Exporter sources down: GPU sources (`gpu_sources`) page after `critical_for`, the
    others warn after `warning_for`."""

    gpu_sources: tuple[str, ...]
    critical_for: Duration
    warning_for: Duration


@dataclass(frozen=True, slots=True)
class FleetWide:
    """The same critical alert on at least `min_nodes` nodes of a cluster at once is one page."""

    min_nodes: float
    for_: Duration


@dataclass(frozen=True, slots=True)
class Scope:
    """Other thresholds (or no alert) for the series matching `selector`, one PromQL label
    matcher such as `node=~"vllm-.*"`. `changed` lists the threshold keys this scope sets
    (their values are in `thresholds`), `disabled` the keys whose alerts it turns off there;
    the default rules of those keys exclude the scope."""

    name: str
    selector: str
    changed: tuple[str, ...]
    disabled: tuple[str, ...]
    thresholds: Any  # Thresholds: every key as the default, `changed` ones overridden

    @property
    def keys(self) -> tuple[str, ...]:
        return self.changed + self.disabled


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


def _tiers(warning: float, warning_for: float, critical: float, critical_for: float) -> Tiers:
    return Tiers(Tier(warning, Duration(warning_for)), Tier(critical, Duration(critical_for)))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every threshold (ratios 0-1, seconds, °C, per second) and duration the alerts use."""

    # GPU memory: used / total (the post-mortem numbers; scope preallocating engines out).
    gpu_memory_used: Tiers = Tiers(Tier(0.75, Duration(3 * MINUTE)), Tier(0.90, Duration(30)))
    gpu_memory_filling: FillPrediction = FillPrediction(
        window=Duration(15 * MINUTE),
        horizon=Duration(30 * MINUTE),
        recent=Duration(5 * MINUTE),
        min_used=0.5,
        for_=Duration(10 * MINUTE),
    )
    # GPU die temperature in °C, averaged over the window.
    gpu_temperature: Tiers = Tiers(Tier(85, Duration(5 * MINUTE)), Tier(90, Duration(MINUTE)))
    gpu_temperature_window: Duration = Duration(2 * MINUTE)
    gpu_clock_slowdown: ClockSlowdown = ClockSlowdown(
        ("sw_thermal_slowdown", "hw_thermal_slowdown", "hw_slowdown", "hw_power_brake_slowdown"),
        window=Duration(15 * MINUTE),
        share=0.25,
        for_=Duration(5 * MINUTE),
    )
    gpu_power_capped: PowerCapped = PowerCapped(
        ratio=0.95, window=Duration(30 * MINUTE), share=0.5, for_=Duration(5 * MINUTE)
    )
    gpu_lost: Lost = Lost(Duration(MINUTE))
    gpu_missing: GpuCount = GpuCount(lookback=Duration(DAY), for_=Duration(2 * MINUTE))
    gpu_recovery_action: Hold = Hold(Duration(0))
    gpu_xid: XidPolicy = XidPolicy(
        window=Duration(5 * MINUTE),
        bucket_severity=(
            ("RESTART_BM", "critical"),
            ("RESTART_VM", "critical"),
            ("RESET_GPU", "critical"),
            ("XID_154", "critical"),
            ("WORKFLOW_XID_48", "critical"),
            ("WORKFLOW_NVLINK_ERR", "warning"),
            ("WORKFLOW_NVLINK5_ERR", "warning"),
            ("RESTART_APP", "warning"),
            ("CHECK_UVM", "warning"),
            ("CHECK_MECHANICALS", "warning"),
            ("UPDATE_SWFW", "warning"),
            ("CONTACT_SUPPORT", "warning"),
            ("WORKFLOW_XID_45", "info"),
            ("IGNORE", "info"),
        ),
        unknown_severity="warning",
        keep_critical=Duration(6 * HOUR),
        keep_warning=Duration(30 * MINUTE),
    )
    gpu_ecc_uncorrectable: Hold = Hold(Duration(0))
    gpu_row_remap_failure: Hold = Hold(Duration(0))
    gpu_row_remap_pending: Hold = Hold(Duration(5 * MINUTE))
    gpu_nvlink_down: Hold = Hold(Duration(2 * MINUTE))
    gpu_nvlink_errors: Increase = Increase(Duration(5 * MINUTE), 0, Duration(10 * MINUTE))
    gpu_pcie_replays: Increase = Increase(Duration(5 * MINUTE), 0, Duration(10 * MINUTE))
    # PyTorch caching allocator: inactive split / reserved, under memory pressure only.
    torch_fragmentation: Fragmentation = Fragmentation(
        _tiers(0.3, 10 * MINUTE, 0.5, 5 * MINUTE), pressure=0.8, min_stranded_bytes=2**30
    )
    torch_alloc_retries: Increase = Increase(Duration(5 * MINUTE))
    torch_ooms: Increase = Increase(Duration(5 * MINUTE))
    # Inference: service-level objectives (multi-window burn rates) page; per-instance
    # figures warn. Latencies in seconds; the engine's limits bound what can be reached.
    inference_limits: EngineLimits = field(default_factory=EngineLimits)
    inference_error_outcomes: tuple[str, ...] = ("shed", "timeout", "error")
    inference_slo: Slo = Slo(
        objective=0.99,
        page=(
            BurnWindow(Duration(HOUR), Duration(5 * MINUTE), 14.4),
            BurnWindow(Duration(6 * HOUR), Duration(30 * MINUTE), 6),
        ),
        ticket=(
            BurnWindow(Duration(DAY), Duration(2 * HOUR), 3),
            BurnWindow(Duration(3 * DAY), Duration(6 * HOUR), 1),
        ),
        min_requests=100,
    )
    inference_ttft_slo: LatencySlo = LatencySlo(target=2.5, objective=0.99)
    inference_tpot_slo: LatencySlo = LatencySlo(target=0.1, objective=0.99)
    inference_rate_window: Duration = Duration(5 * MINUTE)
    inference_min_requests: float = 50  # per-instance warnings: requests in the rate window
    inference_request_p99: Tier = Tier(4, Duration(10 * MINUTE))
    inference_ttft_p99: Tier = Tier(2, Duration(10 * MINUTE))
    inference_tpot_p99: Tier = Tier(0.1, Duration(10 * MINUTE))
    inference_error_ratio: Tier = Tier(0.05, Duration(10 * MINUTE))
    inference_kv_cache: Smoothed = Smoothed(
        Duration(5 * MINUTE), _tiers(0.8, 10 * MINUTE, 0.87, 5 * MINUTE)
    )
    inference_queue_backlog: QueueBacklog = QueueBacklog(
        window=Duration(10 * MINUTE), min_waiting=0, for_=Duration(5 * MINUTE)
    )
    inference_preemptions: Rate = Rate(Duration(5 * MINUTE), 1, Duration(5 * MINUTE), 50)
    inference_engine_stuck: Stuck = Stuck(window=Duration(5 * MINUTE), for_=Duration(2 * MINUTE))
    inference_engine_not_ready: Hold = Hold(Duration(5 * MINUTE))
    # The exporter itself.
    exporter_job: str = "gpu-inference-exporter"
    exporter_down: Hold = Hold(Duration(2 * MINUTE))
    exporter_missing: GpuCount = GpuCount(lookback=Duration(HOUR), for_=Duration(10 * MINUTE))
    exporter_sources_down: SourcesDown = SourcesDown(
        gpu_sources=("nvml", "dcgm", "simulated"),
        critical_for=Duration(2 * MINUTE),
        warning_for=Duration(5 * MINUTE),
    )
    exporter_stale: Staleness = Staleness(after=Duration(MINUTE), for_=Duration(MINUTE))
    # One page for a fleet-wide fault; every alert keeps firing this long through a gap
    # (an exporter rollout) so that it neither resolves nor pages again.
    # pending alerts count too: the fleet page comes before the per-node ones and silences them
    fleet_wide: FleetWide = FleetWide(min_nodes=3, for_=Duration(0))
    keep_firing_for: Duration = Duration(2 * MINUTE)
    scopes: tuple[Scope, ...] = ()
    links: Links = field(default_factory=Links)

    def __post_init__(self) -> None:
        problems = reachability_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def scaled(self, factor: float) -> Thresholds:
        """A copy with every duration (`for`, windows, horizons) multiplied by `factor`."""
        if not factor > 0:
            raise ValueError(f"duration_scale must be greater than 0, got {factor}")
        return typing.cast(Thresholds, _scale(self, factor))


def reachability_problems(t: Thresholds) -> list[str]:
    """Thresholds the engine's own limits make unreachable, or that are not sane numbers."""
    out: list[str] = []
    deadline = t.inference_limits.request_deadline
    shed = t.inference_limits.kv_shed_utilization
    for key, tier in (
        ("inference_request_p99", t.inference_request_p99),
        ("inference_ttft_p99", t.inference_ttft_p99),
    ):
        if tier.threshold >= deadline:
            out.append(
                f"{key}: {tier.threshold:g}s is at or above the request deadline "
                f"({deadline:g}s, inference_limits.request_deadline): it can never fire"
            )
    for key, slo, family in (
        ("inference_ttft_slo", t.inference_ttft_slo, catalog.INFERENCE_TIME_TO_FIRST_TOKEN),
        ("inference_tpot_slo", t.inference_tpot_slo, catalog.INFERENCE_TIME_PER_OUTPUT_TOKEN),
    ):
        if slo.target not in family.buckets:
            out.append(
                f"{key}.target: {slo.target:g}s is not a bucket bound of {family.name} "
                f"({', '.join(f'{b:g}' for b in family.buckets)}): the share of requests "
                "within it cannot be counted"
            )
    if t.inference_ttft_slo.target >= deadline:
        out.append(
            f"inference_ttft_slo.target: {t.inference_ttft_slo.target:g}s is at or above the "
            f"request deadline ({deadline:g}s): every request meets it"
        )
    for name, tier in (
        ("warning", t.inference_kv_cache.tiers.warning),
        ("critical", t.inference_kv_cache.tiers.critical),
    ):
        if tier.threshold >= shed:
            out.append(
                f"inference_kv_cache.{name}.threshold: {tier.threshold:g} is at or above the "
                f"shedding threshold ({shed:g}, inference_limits.kv_shed_utilization): the "
                "engine sheds before it is reached"
            )
    return out


DEFAULTS = Thresholds()

#: Threshold keys (and sub-keys) whose numbers are ratios, which must lie in [0, 1].
RATIO_KEYS = frozenset(
    {
        "gpu_memory_used",
        "torch_fragmentation",
        "inference_kv_cache",
        "inference_error_ratio",
        "share",
        "ratio",
        "objective",
        "pressure",
        "min_used",
        "kv_shed_utilization",
    }
)
_LABEL_MATCHER = re.compile(
    r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$'
)


def _scale(value: Any, factor: float) -> Any:
    if isinstance(value, Duration):
        return value.scaled(factor)
    if isinstance(value, tuple):
        return tuple(_scale(v, factor) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _scale(getattr(value, f.name), factor) for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    return value


def _key(name: str) -> str:
    return "for" if name == "for_" else name


def _is_ratio(where: str) -> bool:
    return any(part in RATIO_KEYS for part in where.split("."))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    if _is_ratio(where) and not 0 <= number <= 1:
        raise ValueError(f"{where}: a ratio between 0 and 1, got {value!r} (75% is 0.75)")
    if number < 0:
        raise ValueError(f"{where}: must not be negative, got {value!r}")
    return number


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Duration:
        return Duration.parse(value)
    if hint is float:
        return _number(value, where)
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
    raise ValueError(f"{where}: cannot be set from the config file")


def _merge(current: Any, data: Any, where: str) -> Any:
    """`current` (a dataclass) with the keys of the mapping `data` replaced, recursively."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'the config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(current))
    by_key = {_key(f.name): f.name for f in dataclasses.fields(current)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in by_key or (key == "scopes" and where):
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
        message = str(exc)
        raise ValueError(f"{where}: {message}" if where else message) from None


def parse_matcher(text: str) -> tuple[str, str, str]:
    """`node=~"vllm-.*"` → ("node", "=~", "vllm-.*"); ValueError for anything else."""
    m = _LABEL_MATCHER.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(
            f'{text!r} is not one PromQL label matcher (write it like node=~"vllm-.*"; '
            "one matcher per scope, so that the default rules can exclude it)"
        )
    if m.group(1).startswith("__"):
        raise ValueError(f"{text!r}: a scope cannot match on an internal label")
    return m.group(1), m.group(2), m.group(3)


def _scopes(base: Thresholds, data: Any) -> tuple[Scope, ...]:
    if not isinstance(data, list):
        raise ValueError(f"scopes: expected a list of scopes, got {data!r}")
    scopes: list[Scope] = []
    for i, item in enumerate(data):
        where = f"scopes[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "selector", "alerts"}:
            raise ValueError(f"{where}: expected name, selector and alerts")
        name, selector, alerts = item.get("name"), item.get("selector"), item.get("alerts")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ValueError(f"{where}.name: a short lower-case name, got {name!r}")
        where = f"scopes.{name}"
        if name in {s.name for s in scopes}:
            raise ValueError(f"{where}: two scopes have this name")
        try:
            parse_matcher(selector)
        except ValueError as exc:
            raise ValueError(f"{where}.selector: {exc}") from None
        if not isinstance(alerts, dict) or not alerts:
            raise ValueError(f"{where}.alerts: a mapping of threshold keys to overrides or off")
        disabled = tuple(k for k, v in alerts.items() if v is None or v is False or v == "off")
        changed = {k: v for k, v in alerts.items() if k not in disabled}
        for key in alerts:
            if key not in {_key(f.name) for f in dataclasses.fields(base)} or key in {
                "scopes",
                "links",
                "exporter_job",
                "fleet_wide",
                "keep_firing_for",
                "inference_limits",
            }:
                raise ValueError(f"{where}.alerts: {key!r} is not an alert's threshold key")
        scoped = _merge(base, changed, f"{where}.alerts")
        scopes.append(Scope(name, selector.strip(), tuple(changed), disabled, scoped))
    return tuple(scopes)


def from_mapping(data: dict[str, Any] | None, base: Thresholds = DEFAULTS) -> Thresholds:
    """`base` with the overrides in `data` (parsed YAML); `duration_scale` scales afterwards.

    Raises ValueError naming the key for an unknown key, a value of the wrong type, a ratio
    outside [0, 1], a number that is not finite, a warning tier not below its critical tier,
    or a threshold the engine's limits make unreachable.
    """
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"the config must be a mapping of keys to values, got {data!r}")
    data = dict(data or {})
    scale = data.pop("duration_scale", None)
    scopes = data.pop("scopes", None)
    merged = typing.cast(Thresholds, _merge(base, data, ""))
    if scopes is not None:
        merged = dataclasses.replace(merged, scopes=_scopes(merged, scopes))
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
