"""The simulated GPU fleet: deterministic load, power, thermal and memory models plus faults.

Time is the injected clock minus its reading at construction. The physics (load, power,
clocks, temperature, the DCGM-like profiling ratios, and the integrals of energy, NVLink and
PCIe bytes and clock-event seconds) advances
on a fixed 1-second grid, so the values read at a given time do not depend on how often
`collect()` was called; between grid points counters grow linearly at the current rate.
Memory figures are functions of the time itself, and scripted events (Xid, ECC, NVLink errors,
allocation retries and OOMs) count "events whose time has passed", never "+1 per call".

A model with no NVLink links (L40S) emits none of the `gpu_nvlink_*` families.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter import catalog
from exporter.samples import Sample
from exporter.sources.clock_events import CLOCK_EVENT_REASONS
from exporter.sources.simulated.mig import MIG_MODELS, mig_devices, mig_samples
from exporter.sources.simulated.models import DEFAULT_MODEL, MHZ, MIB, GpuModel, gpu_model
from exporter.sources.simulated.scenarios import (
    ACTION_SEVERITY,
    DEFAULT_ECC_EVERY_SECONDS,
    DEFAULT_POWER_CAP_SHARE,
    DEFAULT_RAMP_SECONDS,
    RECOVERY_ACTIONS,
    Scenario,
)
from exporter.sources.xid import XidCounters

log = logging.getLogger(__name__)

STEP_SECONDS = 1.0
IDLE_UTILIZATION = 0.05  # gpu_idle below this
POWER_SHARE_AT_FULL_LOAD = 0.97  # share of (TDP - idle) drawn at utilization 1
CONTEXT_BYTES = 600 * MIB  # CUDA context and non-PyTorch allocations of the inference process
ALLOC_GRANULE = 2 * MIB
COOLING_FAILURE_CELSIUS = 60.0  # thermal_throttle: the target temperature rises by this
THROTTLE_PER_CELSIUS = 0.2  # clock share lost per °C above the sw slowdown temperature
THROTTLE_FLOOR = 0.05
FLAP_CLOCK_SHARE = 0.7  # thermal_flap: clock share while the slowdown is on
FLAP_ABOVE_CELSIUS = 1.5  # thermal_flap: target this far above / below the slowdown point
FLAP_BELOW_CELSIUS = 2.5
AT_LIMIT_CLOCK_SHARE = 0.93  # power_at_limit: clock share while sw_power_cap is on
ACTION_NODE_REBOOT = RECOVERY_ACTIONS["reboot"]
ACTION_GPU_RESET = RECOVERY_ACTIONS["reset"]
RETRY_EVERY_SECONDS = 2.0  # memory full: one alloc retry per this
OOM_DELAY_SECONDS = 5.0  # first OOM this long after memory became full
OOM_EVERY_SECONDS = 10.0
NVLINK_RECOVERY_EVERY_SECONDS = 10.0
NVLINK_CRC_FLIT_BURST = 8
NVLINK_REPLAY_BURST = 3
SIMULATED_PID_BASE = 4100  # pid of GPU i's simulated inference process: 4100 + i

_REASONS = tuple(CLOCK_EVENT_REASONS)
_CLOCKS = ("graphics", "sm", "memory", "video")
_NVLINK_ERROR_TYPES = ("crc_flit", "crc_data", "replay", "recovery")
_PCI_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)  # an HGX board's layout
_TAU = 2 * math.pi


def _events(first: float, every: float | None, end: float, t: float) -> int:
    """How many of the events at first, first+every, ... (before `end`) happened by `t`."""
    if t < first or first >= end:
        return 0
    if every is None:
        return 1
    n = math.floor((t - first) / every + 1e-9) + 1
    if end != math.inf:
        n = min(n, math.ceil((end - first) / every - 1e-9))
    return n


def _ramp(s: Scenario, t: float) -> float:
    """Progress 0..1 of a ramping scenario at t."""
    return min(1.0, max(0.0, (t - s.start) / (s.ramp or DEFAULT_RAMP_SECONDS)))


def _mhz(hz: float) -> float:
    """Round a frequency to whole MHz, as NVML reports it."""
    return round(hz / MHZ) * MHZ


@dataclass(slots=True)
class _Step:
    """The physics of one grid step: levels and rates held for [t_k, t_k + STEP_SECONDS)."""

    util: float
    copy_util: float
    limit: float
    power: float
    clocks: tuple[float, float, float, float]  # in _CLOCKS order
    reasons: tuple[bool, ...]  # in _REASONS order
    tx_rate: float
    rx_rate: float
    target: float  # the temperature the GPU tends to
    sm_active: float  # profiling ratios (DCGM-like), following the load
    sm_occupancy: float
    tensor_active: float
    dram_active: float
    pcie_tx_rate: float  # bytes/s
    pcie_rx_rate: float


class _Gpu:
    """One simulated GPU: its personality (from its own seeded RNG), state and scenarios."""

    def __init__(self, index: int, model: GpuModel, seed: int, scenarios: list[Scenario]) -> None:
        self.index = index
        self.model = model
        self.scenarios = scenarios
        rng = random.Random(f"simulated-gpu:{seed}:{index}")
        self._rng = rng
        self.uuid = "GPU-" + str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
        bus = _PCI_BUSES[index % len(_PCI_BUSES)]
        self.pci_bus_id = f"{index // len(_PCI_BUSES):08X}:{bus:02X}:00.0"
        self.period = rng.uniform(180.0, 300.0)
        self.phase = rng.uniform(0.0, _TAU)
        self.base = rng.uniform(0.60, 0.68)
        self.amplitude = rng.uniform(0.22, 0.28)
        self.copy_share = rng.uniform(0.35, 0.50)
        self.rx_share = rng.uniform(0.92, 1.05)
        self.mem_base = rng.uniform(0.645, 0.695)
        self.mem_wave = (rng.uniform(600.0, 1200.0), rng.uniform(0.0, _TAU))
        self.alloc_wave = (rng.uniform(200.0, 400.0), rng.uniform(0.0, _TAU))
        self.split_wave = (rng.uniform(300.0, 600.0), rng.uniform(0.0, _TAU))
        # The profiling figures draw from a stream of their own: the others stay as they were.
        prof = random.Random(f"simulated-gpu-profiling:{seed}:{index}")
        self.sm_share = prof.uniform(0.78, 0.92)  # SM active per unit of utilization
        self.occupancy_share = prof.uniform(0.35, 0.55)  # of the active SMs' warp slots
        self.tensor_share = prof.uniform(0.40, 0.60)  # of the active SM cycles
        self.tensor_wave = (prof.uniform(120.0, 240.0), prof.uniform(0.0, _TAU))
        self.dram_share = prof.uniform(0.75, 0.95)  # of the memory copy utilization
        self.pcie_full_load = prof.uniform(0.6e9, 1.2e9)  # bytes/s sent at utilization 1
        self.pcie_rx_share = prof.uniform(1.2, 1.6)
        self.labels = {"gpu": str(index), "uuid": self.uuid}
        self.last = self._templates()  # catalog-built; each cycle's samples replace them
        # Integrated state, committed at grid points.
        self.k = 0
        self.energy = 0.0
        self.tx = 0.0
        self.rx = 0.0
        self.pcie_tx = 0.0
        self.pcie_rx = 0.0
        self.event_seconds = [0.0] * len(_REASONS)
        draws = (rng.random(), rng.random(), rng.random())
        first = self._physics(0, draws, temp=-math.inf)
        self.temp = model.inlet_celsius + model.thermal_resistance * first.power
        self.step = self._physics(0, draws, self.temp)

    def _active(self, name: str, t: float) -> list[Scenario]:
        return [s for s in self.scenarios if s.name == name and s.active(t)]

    # --- physics on the grid ---------------------------------------------------------------

    def _physics(self, k: int, draws: tuple[float, float, float], temp: float) -> _Step:
        m = self.model
        t = k * STEP_SECONDS
        r1, r2, r3 = draws
        util = self.base + self.amplitude * math.sin(_TAU * t / self.period + self.phase)
        util += 0.08 * (r1 - 0.5)
        caps = self._active("power_cap", t)
        at_limit = self._active("power_at_limit", t)
        flaps = self._active("thermal_flap", t)
        if self._active("idle", t):
            util = 0.01 * r1
        elif caps or at_limit:
            util = max(util, 0.90 + 0.06 * r1)
        util = min(1.0, max(0.0, util))
        limit = min(
            [s.limit or round(DEFAULT_POWER_CAP_SHARE * m.power_limit_watts) for s in caps],
            default=m.power_limit_watts,
        )
        share = 1.0  # clock share left by thermal slowdown and the power cap
        sw_thermal = temp >= m.sw_thermal_slowdown_celsius
        hw_thermal = temp >= m.hw_thermal_slowdown_celsius
        if flaps:  # the slowdown follows the scenario's phase, the temperature hovers near it
            sw_thermal, hw_thermal = any(s.phase_on(t) for s in flaps), False
            share = FLAP_CLOCK_SHARE if sw_thermal else 1.0
        elif sw_thermal:
            drop = THROTTLE_PER_CELSIUS * (temp - m.sw_thermal_slowdown_celsius)
            share = max(THROTTLE_FLOOR, 1.0 - drop)
        dynamic = (m.power_limit_watts - m.idle_watts) * POWER_SHARE_AT_FULL_LOAD * util
        power = m.idle_watts + dynamic * share
        capped = power > limit
        if capped:
            share = max(0.0, min(share, (limit - m.idle_watts) / dynamic))
            power = limit * (1.0 - 0.004 * r2)
        else:
            power = min(limit, power * (1.0 + 0.02 * (r2 - 0.5)))
        if at_limit:  # hovering under the limit: 97-98% with the cap off, 98-99% with it on
            on = any(s.phase_on(t) for s in at_limit)
            power = limit * ((0.98 if on else 0.97) + 0.01 * r2)
            capped = capped or on
            if on:
                share = min(share, AT_LIMIT_CLOCK_SHARE)
        busy = util >= IDLE_UTILIZATION
        if busy:
            sm = max(m.idle_sm_hertz, m.max_sm_hertz * share * (0.97 + 0.03 * r3))
            video = max(m.idle_video_hertz, m.max_video_hertz * share)
        else:
            sm, video = m.idle_sm_hertz, m.idle_video_hertz
        sm = _mhz(min(sm, m.max_sm_hertz))
        active = {
            "gpu_idle": not busy,
            "sw_power_cap": capped,
            "hw_slowdown": hw_thermal,
            "sw_thermal_slowdown": sw_thermal,
            "hw_thermal_slowdown": hw_thermal,
        }
        tx_rate = 0.0
        if m.nvlink_links:
            down = {s.link for s in self._active("nvlink_down", t)}
            up_share = (m.nvlink_links - len(down)) / m.nvlink_links
            tx_rate = m.nvlink_full_load_bytes_per_second * util * min(1.0, share) * up_share
        offset = COOLING_FAILURE_CELSIUS if self._active("thermal_throttle", t) else 0.0
        target = m.inlet_celsius + offset + m.thermal_resistance * power
        if flaps:
            edge = FLAP_ABOVE_CELSIUS if sw_thermal else -FLAP_BELOW_CELSIUS
            target = m.sw_thermal_slowdown_celsius + edge
        copy_util = min(1.0, util * self.copy_share * (0.95 + 0.1 * r3))
        sm_active = min(1.0, util * self.sm_share)
        tensor = 0.9 + 0.1 * math.sin(_TAU * t / self.tensor_wave[0] + self.tensor_wave[1])
        pcie_tx = self.pcie_full_load * util
        return _Step(
            util=util,
            copy_util=copy_util,
            limit=float(limit),
            power=power,
            clocks=(
                min(sm, _mhz(m.max_graphics_hertz)),
                sm,
                _mhz(m.max_memory_hertz),
                _mhz(min(video, m.max_video_hertz)),
            ),
            reasons=tuple(active.get(r, False) for r in _REASONS),
            tx_rate=tx_rate,
            rx_rate=tx_rate * self.rx_share,
            target=target,
            sm_active=sm_active,
            sm_occupancy=sm_active * self.occupancy_share,
            tensor_active=sm_active * self.tensor_share * tensor,
            dram_active=min(1.0, copy_util * self.dram_share),
            pcie_tx_rate=pcie_tx,
            pcie_rx_rate=pcie_tx * self.pcie_rx_share,
        )

    def advance(self, t: float) -> None:
        """Commit every whole grid step that ends at or before t."""
        alpha = 1.0 - math.exp(-STEP_SECONDS / self.model.thermal_time_constant_seconds)
        while (self.k + 1) * STEP_SECONDS <= t:
            s = self.step
            self.energy += s.power * STEP_SECONDS
            self.tx += s.tx_rate * STEP_SECONDS
            self.rx += s.rx_rate * STEP_SECONDS
            self.pcie_tx += s.pcie_tx_rate * STEP_SECONDS
            self.pcie_rx += s.pcie_rx_rate * STEP_SECONDS
            for i, on in enumerate(s.reasons):
                if on:
                    self.event_seconds[i] += STEP_SECONDS
            self.temp += (s.target - self.temp) * alpha
            self.k += 1
            rng = self._rng
            self.step = self._physics(self.k, (rng.random(), rng.random(), rng.random()), self.temp)

    # --- functions of the time itself ------------------------------------------------------

    def _wave(self, wave: tuple[float, float], t: float) -> float:
        return math.sin(_TAU * t / wave[0] + wave[1])

    def memory(self, t: float) -> tuple[int, int, int, int, int]:
        """(used, free, torch allocated, torch reserved, torch inactive split) bytes at t."""
        m = self.model
        usable = m.memory_total_bytes - m.memory_reserved_bytes
        reserved_max = usable - CONTEXT_BYTES
        used = m.memory_total_bytes * (self.mem_base + 0.035 * self._wave(self.mem_wave, t))
        reserved = used - CONTEXT_BYTES
        allocated = reserved * (0.64 + 0.03 * self._wave(self.alloc_wave, t))
        split = reserved * (0.05 + 0.025 * self._wave(self.split_wave, t))
        full = False  # a leak or fragmentation has taken all the memory left
        for s in self._active("memory_leak", t):  # live tensors never freed
            progress = _ramp(s, t)
            extra = (reserved_max - reserved) * progress
            reserved += extra
            allocated += extra
            full = full or progress >= 1.0
        for s in self._active("fragmentation", t):  # cached free blocks split and stranded
            progress = _ramp(s, t)
            cached_free = (reserved - allocated - split) * (1.0 - progress)
            reserved += (reserved_max - reserved) * progress
            split = reserved - allocated - cached_free
            full = full or progress >= 1.0
        if full:
            reserved_b = reserved_max
        else:
            reserved_b = min(reserved_max, int(reserved) // ALLOC_GRANULE * ALLOC_GRANULE)
        allocated_b = min(reserved_b, int(allocated))
        split_b = min(reserved_b - allocated_b, int(split))
        used_b = reserved_b + CONTEXT_BYTES
        return used_b, usable - used_b, allocated_b, reserved_b, split_b

    def count(self, t: float) -> dict[str, int]:
        """Scripted event counts at t (only scenarios that started by t contribute)."""
        c = dict.fromkeys(
            ("retries", "ooms", "ecc", "remapped", "crc_flit", "replay", "recovery"), 0
        )
        for s in self.scenarios:
            if s.name in ("memory_leak", "fragmentation"):
                full = s.start + (s.ramp or DEFAULT_RAMP_SECONDS)
                c["retries"] += _events(full, RETRY_EVERY_SECONDS, s.end, t)
                c["ooms"] += _events(full + OOM_DELAY_SECONDS, OOM_EVERY_SECONDS, s.end, t)
            elif s.name == "ecc_uncorrectable":
                c["ecc"] += _events(s.start, s.every or DEFAULT_ECC_EVERY_SECONDS, s.end, t)
                c["remapped"] += _events(s.start, None, s.end, t)
            elif s.name == "row_remap_pending":
                c["remapped"] += _events(s.start, None, s.end, t)
            elif s.name == "nvlink_down":
                hit = _events(s.start, None, s.end, t)
                c["crc_flit"] += NVLINK_CRC_FLIT_BURST * hit
                c["replay"] += NVLINK_REPLAY_BURST * hit
                c["recovery"] += _events(s.start, NVLINK_RECOVERY_EVERY_SECONDS, s.end, t)
        return c

    def recovery_action(self, t: float) -> int:
        """What the driver asks for at t (nvmlDeviceGpuRecoveryAction_t), held until cleared."""
        actions = [0]
        for s in self.scenarios:
            if s.name == "ecc_uncorrectable" and s.active(t):
                actions.append(ACTION_GPU_RESET)  # cleared by the reset that ends it
            elif s.name == "recovery_action" and s.active(t):
                actions.append(RECOVERY_ACTIONS[s.action or ""])
            elif s.name == "gpu_lost" and s.end <= t < s.end + (s.reboot or math.inf):
                actions.append(ACTION_NODE_REBOOT)  # answers again, but needs the reboot
        return max(actions, key=ACTION_SEVERITY.index)

    def xids(self, t: float) -> dict[int, int]:
        """Xid code -> scripted events counted by t."""
        out: dict[int, int] = {}
        for s in self.scenarios:
            code, every = {
                "gpu_lost": (79, None),
                "ecc_uncorrectable": (48, None),
                "row_remap_pending": (63, None),
                "xid": (s.code, s.every),
            }.get(s.name, (None, None))
            if code is not None:
                out[code] = out.get(code, 0) + _events(s.start, every, s.end, t)
        return out

    # --- samples ---------------------------------------------------------------------------

    def _templates(self) -> list[Sample]:
        """One catalog-built sample per series (value 0), in the order `samples` fills them."""
        m, lb, c = self.model, self.labels, catalog
        out = [
            c.GPU_UP.sample(0, **lb),
            c.GPU_UTILIZATION.sample(0, **lb),
            c.GPU_MEMORY_COPY_UTILIZATION.sample(0, **lb),
            c.GPU_MEMORY_USED.sample(0, **lb),
            c.GPU_MEMORY_FREE.sample(0, **lb),
            c.GPU_MEMORY_TOTAL.sample(0, **lb),
            c.GPU_MEMORY_RESERVED.sample(0, **lb),
            c.GPU_TEMPERATURE.sample(0, **lb, sensor="gpu"),
            c.GPU_TEMPERATURE.sample(0, **lb, sensor="memory"),
            c.GPU_POWER.sample(0, **lb),
            c.GPU_POWER_LIMIT.sample(0, **lb),
            c.GPU_ENERGY.sample(0, **lb),
        ]
        out += [c.GPU_CLOCK.sample(0, **lb, clock=k) for k in _CLOCKS]
        out += [c.GPU_CLOCK_MAX.sample(0, **lb, clock=k) for k in _CLOCKS]
        out += [c.GPU_CLOCK_EVENT_ACTIVE.sample(0, **lb, reason=r) for r in _REASONS]
        out += [c.GPU_CLOCK_EVENT_SECONDS.sample(0, **lb, reason=r) for r in _REASONS]
        out.append(c.GPU_PCIE_REPLAYS.sample(0, **lb))
        out += [
            c.GPU_SM_ACTIVE.sample(0, **lb),
            c.GPU_SM_OCCUPANCY.sample(0, **lb),
            c.GPU_TENSOR_ACTIVE.sample(0, **lb),
            c.GPU_DRAM_ACTIVE.sample(0, **lb),
            c.GPU_PCIE_TRANSMIT.sample(0, **lb),
            c.GPU_PCIE_RECEIVE.sample(0, **lb),
        ]
        if m.nvlink_links:
            out += [
                c.GPU_NVLINK_LINK_UP.sample(0, **lb, link=str(i)) for i in range(m.nvlink_links)
            ]
            out.append(c.GPU_NVLINK_TRANSMIT.sample(0, **lb))
            out.append(c.GPU_NVLINK_RECEIVE.sample(0, **lb))
            out += [c.GPU_NVLINK_ERRORS.sample(0, **lb, type=k) for k in _NVLINK_ERROR_TYPES]
        out += [
            c.GPU_ECC_ERRORS.sample(0, **lb, type="corrected"),
            c.GPU_ECC_ERRORS.sample(0, **lb, type="uncorrected"),
            c.GPU_REMAPPED_ROWS.sample(0, **lb, kind="correctable"),
            c.GPU_REMAPPED_ROWS.sample(0, **lb, kind="uncorrectable"),
            c.GPU_ROW_REMAP_PENDING.sample(0, **lb),
            c.GPU_ROW_REMAP_FAILURE.sample(0, **lb),
            c.GPU_RECOVERY_ACTION.sample(0, **lb),
        ]
        # the allocator of the GPU's one inference process (the process of --collect.processes)
        proc = {**lb, "pid": str(SIMULATED_PID_BASE + self.index), "process": "python3"}
        out += [
            c.TORCH_CUDA_MEMORY_ALLOCATED.sample(0, **proc),
            c.TORCH_CUDA_MEMORY_RESERVED.sample(0, **proc),
            c.TORCH_CUDA_MEMORY_INACTIVE_SPLIT.sample(0, **proc),
            c.TORCH_CUDA_FRAGMENTATION.sample(0, **proc),
            c.TORCH_CUDA_ALLOC_RETRIES.sample(0, **proc),
            c.TORCH_CUDA_OOMS.sample(0, **proc),
        ]
        return out

    def samples(self, t: float) -> list[Sample]:
        """Every series of this GPU at t except gpu_info and the Xid counters.

        The list is kept for the next cycle: extend another with it, never change it."""
        m, s = self.model, self.step
        dt = t - self.k * STEP_SECONDS  # into the current step
        used, free, allocated, reserved, split = self.memory(t)
        n = self.count(t)
        pending = any(
            x.active(t)
            for x in self.scenarios
            if x.name in ("ecc_uncorrectable", "row_remap_pending")
        )
        values: list[float] = [
            1,
            s.util,
            s.copy_util,
            used,
            free,
            m.memory_total_bytes,
            m.memory_reserved_bytes,
            round(self.temp, 1),
            round(self.temp + 3.0 + 4.0 * s.util, 1),
            round(s.power, 3),
            s.limit,
            self.energy + s.power * dt,
            *s.clocks,
            *(_mhz(getattr(m, f"max_{k}_hertz")) for k in _CLOCKS),
            *(int(on) for on in s.reasons),
            *(
                sec + (dt if on else 0.0)
                for sec, on in zip(self.event_seconds, s.reasons, strict=True)
            ),
            0,
            s.sm_active,
            s.sm_occupancy,
            s.tensor_active,
            s.dram_active,
            self.pcie_tx + s.pcie_tx_rate * dt,
            self.pcie_rx + s.pcie_rx_rate * dt,
        ]
        if m.nvlink_links:
            down = {x.link for x in self._active("nvlink_down", t)}
            values += [int(link not in down) for link in range(m.nvlink_links)]
            values += [self.tx + s.tx_rate * dt, self.rx + s.rx_rate * dt]
            values += [n.get(kind, 0) for kind in _NVLINK_ERROR_TYPES]
        values += [
            0,
            n["ecc"],
            0,
            n["remapped"],
            int(pending),
            0,
            self.recovery_action(t),
            allocated,
            reserved,
            split,
            split / reserved if reserved else 0.0,
            n["retries"],
            n["ooms"],
        ]
        # a sample is immutable: an unchanged value (totals, limits, states, counters) reuses it
        self.last = [x.with_value(v) for x, v in zip(self.last, map(float, values), strict=True)]
        return self.last


class SimulatedSource:
    """A deterministic fleet of simulated GPUs with named fault scenarios.

    The same seed, scenarios and sequence of clock readings give identical samples. Each GPU
    has its own random stream, so a scenario on one GPU leaves the others' values untouched.
    The last `mig` GPUs are in MIG mode. A scenario that starts or ends, and a GPU lost or
    back, is said in the log when a collection first sees it.
    """

    name = "simulated"

    def __init__(
        self,
        gpus: int = 8,
        model: str = DEFAULT_MODEL,
        seed: int = 0,
        scenarios: Sequence[Scenario] = (),
        clock: Callable[[], float] = time.monotonic,
        driver_version: str = "550.90.07",
        cuda_version: str = "12.4",
        processes: bool = False,
        mig: int = 0,
    ) -> None:
        if not isinstance(gpus, int) or gpus < 1:
            raise ValueError(f"the simulated fleet needs at least 1 GPU (got {gpus!r})")
        self.model = gpu_model(model)
        if not 0 <= mig <= gpus:
            raise ValueError(f"--simulate.mig {mig}: the fleet has {gpus} GPUs")
        if mig and self.model.name not in MIG_MODELS:
            raise ValueError(f"--simulate.mig: the {self.model.name} has no MIG mode")
        for s in scenarios:
            try:
                s.check_fleet(gpus, self.model)
            except ValueError as exc:
                raise ValueError(f"invalid scenario {str(s)!r}: {exc}") from None
        self.scenarios = tuple(scenarios)
        self.processes = processes  # one inference process per GPU, as --collect.processes
        self._clock = clock
        self._t0 = clock()
        self._t = 0.0
        self._lock = threading.Lock()
        self._gpus = [
            _Gpu(i, self.model, seed, [s for s in self.scenarios if s.on_gpu(i)])
            for i in range(gpus)
        ]
        self._mig = {
            g.index: mig_devices(g.index, seed, self.model.memory_total_bytes)
            for g in self._gpus[gpus - mig :]
        }
        self._active: set[Scenario] = set()  # the scenarios active at the last collection
        self._xids = XidCounters()
        self._info: list[Sample] = []
        for g in self._gpus:
            self._xids.add_gpu(g.index, g.uuid)
            self._info.append(
                catalog.GPU_INFO.sample(
                    1,
                    **g.labels,
                    name=self.model.name,
                    pci_bus_id=g.pci_bus_id,
                    driver_version=driver_version,
                    cuda_version=cuda_version,
                    backend="simulated",
                )
            )

    @property
    def uuids(self) -> list[str]:
        """The UUID of each GPU, by index."""
        return [g.uuid for g in self._gpus]

    def collect(self) -> list[Sample]:
        """Advance the simulation to the clock's time and return every series of every GPU."""
        with self._lock:
            self._t = t = max(self._t, self._clock() - self._t0)  # never run backwards
            self._log_transitions(t)
            out: list[Sample] = []
            for g, info in zip(self._gpus, self._info, strict=True):
                g.advance(t)
                for code, total in g.xids(t).items():
                    seen = self._xids.count(g.index, code)
                    if total > seen:
                        self._xids.record(g.index, code, total - seen)
                out.append(info)
                if any(s.name == "gpu_lost" and s.active(t) for s in g.scenarios):
                    out.append(catalog.GPU_UP.sample(0, **g.labels))
                else:
                    out += g.samples(t)
                    if self.processes:
                        out.append(self._process_sample(g, t))
                    if g.index in self._mig:
                        usable = self.model.memory_total_bytes - self.model.memory_reserved_bytes
                        share = g.memory(t)[0] / usable
                        out += mig_samples(self._mig[g.index], g.labels, share, t)
                out += self._xids.samples(g.index)
            return out

    def _log_transitions(self, t: float) -> None:
        active = {s for s in self.scenarios if s.active(t)}
        for s in sorted(active - self._active, key=str):
            if s.name == "gpu_lost":
                log.warning("simulated GPU %d (%s) is lost (%s)", s.gpu, self.uuids[s.gpu], s)
            else:
                log.info("simulated scenario %s started at %.0fs", s, t)
        for s in sorted(self._active - active, key=str):
            if s.name == "gpu_lost":
                log.info("simulated GPU %d (%s) is back (%s ended)", s.gpu, self.uuids[s.gpu], s)
            else:
                log.info("simulated scenario %s ended at %.0fs", s, t)
        self._active = active

    def _process_sample(self, g: _Gpu, t: float) -> Sample:
        """The GPU's inference process, which holds all of its used memory."""
        used = g.memory(t)[0]
        return catalog.GPU_PROCESS_MEMORY_USED.sample(
            used, **g.labels, pid=str(SIMULATED_PID_BASE + g.index), process="python3"
        )

    def close(self) -> None:
        """Nothing to release."""
