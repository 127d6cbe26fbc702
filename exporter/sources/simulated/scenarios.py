"""Named fault scenarios for the simulated fleet, and the CLI syntax that names them.

Syntax: ``NAME[:key=value[,key=value...]]``, e.g. ``xid:gpu=3,start=30,code=79,every=60``.
Every scenario takes ``gpu`` (required: a fault is on one GPU, said, never a silent GPU 0),
``start`` (after the source started, default 0) and ``duration`` (omitted = forever); some take
more keys (see `SCENARIO_KEYS`). Times take the units of every duration flag (``90``, ``1.5m``,
``500ms``); ``limit`` is in watts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from exporter.durations import seconds
from exporter.sources.simulated.models import DEFAULT_MODEL, GpuModel, gpu_model

#: Scenario name -> one-line description (shown in --help).
SCENARIOS: dict[str, str] = {
    "thermal_throttle": "cooling failure: past 90 °C within ~10-20 s, thermal slowdown cuts "
    "clocks and power",
    "power_cap": "enforced power limit drops to limit=W (default 55% of TDP): power pinned "
    "there, sw_power_cap, clocks reduced",
    "memory_leak": "VRAM used climbs to full over ramp=S (default 60 s), then alloc retries "
    "and OOMs",
    "fragmentation": "allocator fragments: ratio past 0.3 then 0.5 within ramp=S (default "
    "60 s), then alloc retries and OOMs",
    "gpu_lost": "Xid 79, fallen off the bus: gpu_up 0, only gpu_info and the Xid counters remain",
    "xid": "Xid code=C counted at start, and every=S seconds while active when given",
    "nvlink_down": "NVLink link=L down: link_up 0, recovery and CRC errors, less traffic",
    "ecc_uncorrectable": "uncorrectable ECC error at start and every=S (default 30 s), Xid 48, "
    "a row remap pending",
    "row_remap_pending": "a row remap waits for a GPU reset: remap pending 1, Xid 63",
    "idle": "no work: utilization ~0, power near idle, clocks down, cools to ~32 °C",
}

COMMON_KEYS: tuple[str, ...] = ("gpu", "start", "duration")

#: Scenario name -> the keys it accepts beyond COMMON_KEYS.
SCENARIO_KEYS: dict[str, tuple[str, ...]] = {
    "thermal_throttle": (),
    "power_cap": ("limit",),
    "memory_leak": ("ramp",),
    "fragmentation": ("ramp",),
    "gpu_lost": (),
    "xid": ("code", "every"),
    "nvlink_down": ("link",),
    "ecc_uncorrectable": ("every",),
    "row_remap_pending": (),
    "idle": (),
}

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {"xid": ("code",), "nvlink_down": ("link",)}

_INT_KEYS = frozenset({"gpu", "code", "link"})
_TIME_KEYS = frozenset({"start", "duration", "every", "ramp"})
_POSITIVE_KEYS = frozenset({"duration", "every", "ramp", "limit", "code"})

DEFAULT_RAMP_SECONDS = 60.0
DEFAULT_ECC_EVERY_SECONDS = 30.0
DEFAULT_POWER_CAP_SHARE = 0.55


def _keys_hint(name: str) -> str:
    return f"keys for {name}: {', '.join(COMMON_KEYS + SCENARIO_KEYS[name])}"


def _names_hint() -> str:
    return f"valid names: {', '.join(SCENARIOS)}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault, on one GPU, active while ``start <= t < start + duration``."""

    name: str
    gpu: int = 0
    start: float = 0.0
    duration: float | None = None
    code: int | None = None
    every: float | None = None
    link: int | None = None
    ramp: float | None = None
    limit: float | None = None

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r} ({_names_hint()})")
        allowed = set(SCENARIO_KEYS[self.name])
        for f in fields(self)[4:]:
            if getattr(self, f.name) is not None and f.name not in allowed:
                raise ValueError(f"{self.name} takes no key {f.name!r} ({_keys_hint(self.name)})")
        for key in REQUIRED_KEYS.get(self.name, ()):
            if getattr(self, key) is None:
                raise ValueError(f"{self.name} needs {key}=... ({_keys_hint(self.name)})")
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is None:
                continue
            if not math.isfinite(value):
                raise ValueError(f"{f.name}={value} is not a finite number")
            if value < 0 or (value == 0 and f.name in _POSITIVE_KEYS):
                must = "be greater than 0" if f.name in _POSITIVE_KEYS else "not be negative"
                raise ValueError(f"{f.name}={value:g} must {must}")

    @property
    def end(self) -> float:
        """When the scenario stops (infinity when it runs forever)."""
        return math.inf if self.duration is None else self.start + self.duration

    def active(self, t: float) -> bool:
        """True while ``start <= t < end`` (t in seconds since the source started)."""
        return self.start <= t < self.end

    def check_fleet(self, gpus: int | None, model: GpuModel) -> None:
        """Raise ValueError when the scenario names a GPU, link or limit the fleet lacks
        (`gpus` None: the GPU index is not checked)."""
        if gpus is not None and self.gpu >= gpus:
            raise ValueError(
                f"gpu={self.gpu} is out of range for a fleet of {gpus} GPU(s) (0-{gpus - 1})"
            )
        if self.link is not None and self.link >= model.nvlink_links:
            links = (
                f"has {model.nvlink_links} NVLink links (0-{model.nvlink_links - 1})"
                if model.nvlink_links
                else "has no NVLink links"
            )
            raise ValueError(f"link={self.link} is out of range: {model.name} {links}")
        if self.limit is not None and not (
            model.min_power_limit_watts <= self.limit <= model.power_limit_watts
        ):
            raise ValueError(
                f"limit={self.limit:g} W is out of range for {model.name} "
                f"({model.min_power_limit_watts:g}-{model.power_limit_watts:g} W)"
            )

    def __str__(self) -> str:
        parts = [f"gpu={self.gpu}"]
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value is not None and not (f.name == "start" and value == 0):
                parts.append(f"{f.name}={value:g}")
        return f"{self.name}:{','.join(parts)}"


def _number(key: str, text: str) -> float | int:
    if key in _INT_KEYS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{key}={text!r} is not a whole number") from None
    if key in _TIME_KEYS:
        try:
            return seconds(text)
        except ValueError:
            raise ValueError(f"{key}={text!r} is not a duration (like 30, 1.5m, 500ms)") from None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a number of watts") from None
    return value


def parse_scenario(text: str, gpus: int | None = None, model: str | None = None) -> Scenario:
    """Parse ``NAME[:key=value,...]``; with `gpus` and `model`, also check it fits that fleet.

    Raises ValueError with a one-line message naming the problem and the valid names or keys.
    """
    try:
        name, _, rest = text.strip().partition(":")
        name = name.strip()
        if not name:
            raise ValueError(f"no scenario name ({_names_hint()})")
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r} ({_names_hint()})")
        valid = COMMON_KEYS + SCENARIO_KEYS[name]
        values: dict[str, float | int] = {}
        for item in rest.split(",") if rest.strip() else ():
            key, eq, raw = (part.strip() for part in item.partition("="))
            if not eq or not key or not raw:
                raise ValueError(f"{item.strip()!r} is not key=value ({_keys_hint(name)})")
            if key not in valid:
                raise ValueError(f"unknown key {key!r} for {name} ({_keys_hint(name)})")
            if key in values:
                raise ValueError(f"key {key!r} given twice")
            values[key] = _number(key, raw)
        scenario = Scenario(name, **values)  # type: ignore[arg-type]
        if "gpu" not in values:
            raise ValueError(f"which GPU? add gpu=I, like {name}:gpu=0 ({_keys_hint(name)})")
        if gpus is not None or model is not None:
            scenario.check_fleet(gpus, gpu_model(model or DEFAULT_MODEL))
    except ValueError as exc:
        raise ValueError(f"invalid scenario {text!r}: {exc}") from None
    return scenario
