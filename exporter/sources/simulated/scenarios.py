"""Named fault scenarios for the simulated fleet, and the CLI syntax that names them.

Syntax: ``NAME[:key=value[,key=value...]]``, e.g. ``xid:gpu=3,start=30,code=79,every=60``.
Every scenario takes ``gpu`` (default 0; ``all``: the same fault on every GPU of the fleet, as
a bad driver rollout would), ``start`` (seconds after the source started, default 0) and
``duration`` (seconds; omitted = forever); some take more keys (see `SCENARIO_KEYS`).

Scenarios that the driver answers with a recovery action set `gpu_recovery_action` as it would
and hold it, latched, until the reset or reboot that clears it: ``ecc_uncorrectable`` 1 (GPU
reset) until its end; ``gpu_lost`` 2 (node reboot) once the GPU answers again, until
``reboot=S`` later (never without it: a real reboot restarts the exporter too).
``recovery_action`` sets any action for its window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

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
    "gpu_lost": "Xid 79, off the bus: gpu_up 0, only gpu_info and Xids; back after it with "
    "recovery action 2 till reboot=S",
    "xid": "Xid code=C counted at start, and every=S seconds while active when given",
    "nvlink_down": "NVLink link=L down: link_up 0, recovery and CRC errors, less traffic",
    "ecc_uncorrectable": "uncorrectable ECC error at start and every=S (default 30 s), Xid 48, "
    "remap pending, GPU reset needed",
    "row_remap_pending": "a row remap waits for a GPU reset: remap pending 1, Xid 63",
    "idle": "no work: utilization ~0, power near idle, clocks down, cools to ~32 °C",
    "recovery_action": "the driver asks for action=reset|reboot|drain_p2p|drain_and_reset "
    "(gpu_recovery_action 1-4)",
    "thermal_flap": "thermal slowdown on for duty (default 0.5) of every period=S (default 60 s), "
    "clocks cut while on",
    "power_at_limit": "full load at the power limit: power 97-99% of it, sw_power_cap on for duty "
    "(0.5) of every period=S (20 s)",
}

COMMON_KEYS: tuple[str, ...] = ("gpu", "start", "duration")

#: Scenario name -> the keys it accepts beyond COMMON_KEYS.
SCENARIO_KEYS: dict[str, tuple[str, ...]] = {
    "thermal_throttle": (),
    "power_cap": ("limit",),
    "memory_leak": ("ramp",),
    "fragmentation": ("ramp",),
    "gpu_lost": ("reboot",),
    "xid": ("code", "every"),
    "nvlink_down": ("link",),
    "ecc_uncorrectable": ("every",),
    "row_remap_pending": (),
    "idle": (),
    "recovery_action": ("action",),
    "thermal_flap": ("period", "duty"),
    "power_at_limit": ("period", "duty"),
}

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "xid": ("code",),
    "nvlink_down": ("link",),
    "recovery_action": ("action",),
}

#: The `action` key: nvmlDeviceGpuRecoveryAction_t values, as gpu_recovery_action exports them.
RECOVERY_ACTIONS: dict[str, int] = {"reset": 1, "reboot": 2, "drain_p2p": 3, "drain_and_reset": 4}
#: Actions from the least to the most disruptive: when two scenarios overlap on a GPU, the
#: GPU reports the most disruptive one (a reboot also resets the GPU).
ACTION_SEVERITY: tuple[int, ...] = (0, 3, 1, 4, 2)
ALL_GPUS = "all"

_INT_KEYS = frozenset({"gpu", "code", "link"})
_TEXT_KEYS = frozenset({"action"})
_POSITIVE_KEYS = frozenset(
    {"duration", "every", "ramp", "limit", "code", "period", "duty", "reboot"}
)

DEFAULT_RAMP_SECONDS = 60.0
DEFAULT_ECC_EVERY_SECONDS = 30.0
DEFAULT_POWER_CAP_SHARE = 0.55
DEFAULT_DUTY = 0.5
#: Default period of the on/off scenarios: thermal_flap, power_at_limit.
DEFAULT_PERIOD_SECONDS: dict[str, float] = {"thermal_flap": 60.0, "power_at_limit": 20.0}


def _keys_hint(name: str) -> str:
    return f"keys for {name}: {', '.join(COMMON_KEYS + SCENARIO_KEYS[name])}"


def _names_hint() -> str:
    return f"valid names: {', '.join(SCENARIOS)}"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One fault, on one GPU (every GPU: gpu None), active while ``start <= t < start +
    duration``."""

    name: str
    gpu: int | None = 0
    start: float = 0.0
    duration: float | None = None
    code: int | None = None
    every: float | None = None
    link: int | None = None
    ramp: float | None = None
    limit: float | None = None
    action: str | None = None
    period: float | None = None
    duty: float | None = None
    reboot: float | None = None

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
        if self.action is not None and self.action not in RECOVERY_ACTIONS:
            raise ValueError(f"action={self.action!r} is not one of {', '.join(RECOVERY_ACTIONS)}")
        if self.duty is not None and self.duty > 1:
            raise ValueError(f"duty={self.duty:g} is a share of the period: at most 1")
        if self.reboot is not None and self.duration is None:
            raise ValueError("reboot=S counts from when the GPU answers again: give duration=")
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is None or f.name in _TEXT_KEYS:
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

    def on_gpu(self, index: int) -> bool:
        """True when the scenario applies to GPU `index` (every GPU for ``gpu=all``)."""
        return self.gpu is None or self.gpu == index

    def phase_on(self, t: float) -> bool:
        """For the on/off scenarios: True while active and in the "on" share of its period."""
        if not self.active(t):
            return False
        period = self.period or DEFAULT_PERIOD_SECONDS[self.name]
        return (t - self.start) % period < (self.duty or DEFAULT_DUTY) * period

    def check_fleet(self, gpus: int | None, model: GpuModel) -> None:
        """Raise ValueError when the scenario names a GPU, link or limit the fleet lacks
        (`gpus` None: the GPU index is not checked)."""
        if gpus is not None and self.gpu is not None and self.gpu >= gpus:
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
        parts = [f"gpu={ALL_GPUS if self.gpu is None else self.gpu}"]
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value is None or (f.name == "start" and value == 0):
                continue
            parts.append(f"{f.name}={value}" if f.name in _TEXT_KEYS else f"{f.name}={value:g}")
        return f"{self.name}:{','.join(parts)}"


def _number(key: str, text: str) -> float | int | str | None:
    if key in _TEXT_KEYS:
        return text
    if key == "gpu" and text == ALL_GPUS:
        return None
    if key in _INT_KEYS:
        try:
            return int(text)
        except ValueError:
            also = f" or {ALL_GPUS}" if key == "gpu" else ""
            raise ValueError(f"{key}={text!r} is not a whole number{also}") from None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a number of seconds or watts") from None
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
        values: dict[str, float | int | str | None] = {}
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
        if gpus is not None or model is not None:
            scenario.check_fleet(gpus, gpu_model(model or DEFAULT_MODEL))
    except ValueError as exc:
        raise ValueError(f"invalid scenario {text!r}: {exc}") from None
    return scenario
