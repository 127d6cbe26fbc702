"""Clock-event (throttle) reasons: NVML's bitmask values under stable snake_case names.

Shared by the NVML source (which reads `nvmlDeviceGetCurrentClocksEventReasons`) and the
simulated fleet; the names are the `reason` label of `gpu_clock_event_active` and
`gpu_clock_event_seconds_total`.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Reason name -> NVML bit (nvmlClocksEventReason*), in bit order.
CLOCK_EVENT_REASONS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}

#: Reasons that mean the clocks are held down by a limit (not idle or a user setting).
THROTTLE_REASONS: frozenset[str] = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
    }
)


def reasons_from_bitmask(mask: int) -> dict[str, bool]:
    """Every known reason, True where its bit is set in `mask` (unknown bits are ignored)."""
    return {name: bool(mask & bit) for name, bit in CLOCK_EVENT_REASONS.items()}


def bitmask_from_reasons(reasons: Iterable[str]) -> int:
    """The NVML bitmask of the named reasons; a KeyError names an unknown reason."""
    mask = 0
    for name in reasons:
        try:
            mask |= CLOCK_EVENT_REASONS[name]
        except KeyError:
            valid = ", ".join(CLOCK_EVENT_REASONS)
            raise KeyError(f"unknown clock event reason {name!r} (valid: {valid})") from None
    return mask
