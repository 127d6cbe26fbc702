"""The DCGM fields the source watches: each by its number and its constant names.

A DCGM field number is part of DCGM's C API and keeps its meaning and unit across releases (a
new unit comes with a new field). Its Python constant may be renamed: DCGM 4.6 spells several
of them with their unit (`DCGM_FI_DEV_GPU_TEMP_CELSIUS`), and the old names still resolve there
with a DeprecationWarning; older bindings know only the old names. `resolve()` looks each field
up in the bindings' `dcgm_fields`, newest name first, so DCGM 4.6 raises no warning and older
DCGM still resolves:

- a name that resolves to the expected number: the field is watched;
- a name that resolves to another number: these bindings disagree with what this exporter knows
  of the field's unit, so the field is skipped (absent, and logged) rather than misconverted;
- no name resolves: the bindings (and so the hostengine) predate the field: skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class Field:
    """One DCGM field: our key for it, DCGM's number, and its constant names, newest first."""

    key: str
    number: int
    names: tuple[str, ...]


def _f(key: str, number: int, *names: str) -> Field:
    return Field(key, number, names)


# Identity, load and memory.
NVML_INDEX = _f("nvml_index", 52, "DCGM_FI_DEV_NVML_INDEX")
GPU_UTIL = _f("gpu_util", 203, "DCGM_FI_DEV_GPU_UTIL")
MEM_COPY_UTIL = _f("mem_copy_util", 204, "DCGM_FI_DEV_MEM_COPY_UTIL")
FB_TOTAL = _f("fb_total", 250, "DCGM_FI_DEV_FB_TOTAL")
FB_FREE = _f("fb_free", 251, "DCGM_FI_DEV_FB_FREE")
FB_USED = _f("fb_used", 252, "DCGM_FI_DEV_FB_USED")
FB_RESERVED = _f("fb_reserved", 253, "DCGM_FI_DEV_FB_RESERVED")
# Thermal, power, clocks.
GPU_TEMP = _f("gpu_temp", 150, "DCGM_FI_DEV_GPU_TEMP_CELSIUS", "DCGM_FI_DEV_GPU_TEMP")
MEMORY_TEMP = _f("memory_temp", 140, "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", "DCGM_FI_DEV_MEMORY_TEMP")
POWER = _f("power", 155, "DCGM_FI_DEV_POWER_USAGE_WATTS", "DCGM_FI_DEV_POWER_USAGE")
POWER_LIMIT = _f(
    "power_limit",
    164,
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT_WATTS",
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
)
ENERGY = _f("energy", 156, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
SM_CLOCK = _f("sm_clock", 100, "DCGM_FI_DEV_SM_CLOCK")
MEM_CLOCK = _f("mem_clock", 101, "DCGM_FI_DEV_MEM_CLOCK")
VIDEO_CLOCK = _f("video_clock", 102, "DCGM_FI_DEV_VIDEO_CLOCK")
MAX_SM_CLOCK = _f("max_sm_clock", 113, "DCGM_FI_DEV_MAX_SM_CLOCK")
MAX_MEM_CLOCK = _f("max_mem_clock", 114, "DCGM_FI_DEV_MAX_MEM_CLOCK")
MAX_VIDEO_CLOCK = _f("max_video_clock", 115, "DCGM_FI_DEV_MAX_VIDEO_CLOCK")
CLOCK_EVENTS = _f(
    "clock_events",
    112,
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
)
# Interconnect and errors.
PCIE_REPLAYS = _f("pcie_replays", 202, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER")
ECC_SBE = _f("ecc_sbe", 310, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL")
ECC_DBE = _f("ecc_dbe", 311, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL")
ROWS_UNCORRECTABLE = _f("rows_uncorrectable", 393, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS")
ROWS_CORRECTABLE = _f("rows_correctable", 394, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS")
ROW_REMAP_FAILURE = _f("row_remap_failure", 395, "DCGM_FI_DEV_ROW_REMAP_FAILURE")
ROW_REMAP_PENDING = _f("row_remap_pending", 396, "DCGM_FI_DEV_ROW_REMAP_PENDING")
NVLINK_CRC_FLIT = _f("nvlink_crc_flit", 409, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL")
NVLINK_CRC_DATA = _f("nvlink_crc_data", 419, "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL")
NVLINK_REPLAY = _f("nvlink_replay", 429, "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL")
NVLINK_RECOVERY = _f("nvlink_recovery", 439, "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL")
XID = _f("xid", 230, "DCGM_FI_DEV_XID_ERRORS")
# The driver's recovery action (nvmlDeviceGpuRecoveryAction_t): DCGM 4.5 and later; 4.6 drops
# the GET_ from its name.
RECOVERY_ACTION = _f(
    "recovery_action",
    1523,
    "DCGM_FI_DEV_GPU_RECOVERY_ACTION",
    "DCGM_FI_DEV_GET_GPU_RECOVERY_ACTION",
)
# Profiling (the profiling module: DCGM_FI_PROF_*). PCIe and NVLink are rates in bytes/s.
SM_ACTIVE = _f("sm_active", 1002, "DCGM_FI_PROF_SM_ACTIVE")
SM_OCCUPANCY = _f("sm_occupancy", 1003, "DCGM_FI_PROF_SM_OCCUPANCY")
TENSOR_ACTIVE = _f("tensor_active", 1004, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")
DRAM_ACTIVE = _f("dram_active", 1005, "DCGM_FI_PROF_DRAM_ACTIVE")
PCIE_TX_RATE = _f("pcie_tx_rate", 1009, "DCGM_FI_PROF_PCIE_TX_BYTES")
PCIE_RX_RATE = _f("pcie_rx_rate", 1010, "DCGM_FI_PROF_PCIE_RX_BYTES")
NVLINK_TX_RATE = _f("nvlink_tx_rate", 1011, "DCGM_FI_PROF_NVLINK_TX_BYTES")
NVLINK_RX_RATE = _f("nvlink_rx_rate", 1012, "DCGM_FI_PROF_NVLINK_RX_BYTES")

#: Watched in one field group at the collection interval; served by DCGM's core.
BASIC: tuple[Field, ...] = (
    NVML_INDEX,
    GPU_UTIL,
    MEM_COPY_UTIL,
    FB_TOTAL,
    FB_FREE,
    FB_USED,
    FB_RESERVED,
    GPU_TEMP,
    MEMORY_TEMP,
    POWER,
    POWER_LIMIT,
    ENERGY,
    SM_CLOCK,
    MEM_CLOCK,
    VIDEO_CLOCK,
    MAX_SM_CLOCK,
    MAX_MEM_CLOCK,
    MAX_VIDEO_CLOCK,
    CLOCK_EVENTS,
    PCIE_REPLAYS,
    ECC_SBE,
    ECC_DBE,
    ROWS_UNCORRECTABLE,
    ROWS_CORRECTABLE,
    ROW_REMAP_FAILURE,
    ROW_REMAP_PENDING,
    NVLINK_CRC_FLIT,
    NVLINK_CRC_DATA,
    NVLINK_REPLAY,
    NVLINK_RECOVERY,
    XID,
)
#: Watched in a field group of their own: fields newer than hostengines still in service. A
#: hostengine older than a field refuses every group that names it, so these cost only their own
#: families there; bindings older than a field skip it (an info line, not a warning).
RECENT: tuple[Field, ...] = (RECOVERY_ACTION,)
#: Watched in a second field group: the profiling module may refuse it without harming BASIC.
PROFILING: tuple[Field, ...] = (
    SM_ACTIVE,
    SM_OCCUPANCY,
    TENSOR_ACTIVE,
    DRAM_ACTIVE,
    PCIE_TX_RATE,
    PCIE_RX_RATE,
    NVLINK_TX_RATE,
    NVLINK_RX_RATE,
)


@dataclass
class Resolved:
    """The outcome of `resolve`: the fields to watch, and what happened to the others."""

    numbers: dict[str, int] = field(default_factory=dict)  # key -> DCGM number, watched
    names: dict[str, str] = field(default_factory=dict)  # key -> the name that resolved
    deprecated: list[str] = field(default_factory=list)  # names that warned on lookup
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why it is not watched

    def ids(self, fields: Iterable[Field]) -> list[int]:
        return [self.numbers[f.key] for f in fields if f.key in self.numbers]


def resolve(dcgm_fields: ModuleType, fields: Iterable[Field]) -> Resolved:
    """Look every field up in the bindings' dcgm_fields (see the module docstring)."""
    out = Resolved()
    for f in fields:
        mismatch = ""
        for name in f.names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DeprecationWarning)
                number = getattr(dcgm_fields, name, None)
            if number is None:
                continue
            if int(number) != f.number:
                mismatch = f"dcgm_fields.{name} is {int(number)}, this exporter knows {f.number}"
                continue
            out.numbers[f.key] = f.number
            out.names[f.key] = name
            if any(issubclass(w.category, DeprecationWarning) for w in caught):
                out.deprecated.append(name)
            break
        else:
            out.skipped[f.key] = mismatch or f"unknown to these bindings ({' / '.join(f.names)})"
    return out
