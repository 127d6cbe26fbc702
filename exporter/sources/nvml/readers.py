"""What one GPU is asked each cycle: small readers, each one NVML call turned into samples.

`probe()` tries every reader once on a GPU and keeps those NVML answers; a reader NVML says is
not supported (see errors.py) is dropped, and its series are listed as unsupported for that GPU.
Nothing here calls nvmlDeviceGetPcieThroughput: the driver blocks ~20 ms per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pynvml

from exporter import catalog
from exporter.catalog import MetricFamily
from exporter.samples import Sample
from exporter.sources.clock_events import CLOCK_EVENT_REASONS
from exporter.sources.nvml.errors import (
    NVML_EXCEPTIONS,
    ErrorClass,
    GpuLost,
    LibraryDown,
    classify,
    describe,
)
from exporter.sources.nvml.fields import FieldRequest, field_value

log = logging.getLogger(__name__)

Handle = Any  # pynvml.c_nvmlDevice_t
Read = Callable[[Handle], list[Sample]]

MHZ = 1_000_000.0
KIB = 1024.0

#: NVML clock types under the `clock` label.
CLOCKS = {
    "graphics": pynvml.NVML_CLOCK_GRAPHICS,
    "sm": pynvml.NVML_CLOCK_SM,
    "memory": pynvml.NVML_CLOCK_MEM,
    "video": pynvml.NVML_CLOCK_VIDEO,
}

#: The driver's latched recovery action (nvmlDeviceGpuRecoveryAction_t), from driver R565;
#: older drivers answer NotSupported for the entry, so the family is absent there.
#: nvidia-ml-py before 12.565 lacks the name.
GPU_RECOVERY_ACTION = getattr(pynvml, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", 230)

#: Device-wide fields read in one nvmlDeviceGetFieldValues call: id -> (family, extra labels).
SCALAR_FIELDS: dict[int, tuple[MetricFamily, dict[str, str]]] = {
    pynvml.NVML_FI_DEV_MEMORY_TEMP: (catalog.GPU_TEMPERATURE, {"sensor": "memory"}),
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: (catalog.GPU_ECC_ERRORS, {"type": "corrected"}),
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: (catalog.GPU_ECC_ERRORS, {"type": "uncorrected"}),
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL: (
        catalog.GPU_NVLINK_ERRORS,
        {"type": "crc_flit"},
    ),
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL: (
        catalog.GPU_NVLINK_ERRORS,
        {"type": "crc_data"},
    ),
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL: (
        catalog.GPU_NVLINK_ERRORS,
        {"type": "replay"},
    ),
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL: (
        catalog.GPU_NVLINK_ERRORS,
        {"type": "recovery"},
    ),
    GPU_RECOVERY_ACTION: (catalog.GPU_RECOVERY_ACTION, {}),
}
#: The NVLink error totals only mean something on a GPU with NVLink links.
NVLINK_ONLY_FIELDS = frozenset(
    f for f, (fam, _) in SCALAR_FIELDS.items() if fam is catalog.GPU_NVLINK_ERRORS
)
TX, RX = pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
#: A link's state as a field (scopeId = link): every link in the one field call instead of one
#: nvmlDeviceGetNvLinkState call per link. Drivers without it answer NotSupported per entry.
LINK_STATE = getattr(pynvml, "NVML_FI_DEV_NVLINK_GET_STATE", 165)
#: Field states of a trained link: active, or asleep in a low-power state (still up).
LINK_STATES_UP = frozenset(
    {getattr(pynvml, "NVML_NVLINK_STATE_ACTIVE", 1), getattr(pynvml, "NVML_NVLINK_STATE_SLEEP", 2)}
)


class Series:
    """One GPU's catalog-checked label sets, built once, so a cycle only fills in values.

    The last sample of each series is kept too: most GPU values (totals, limits, states, error
    counters) do not change between cycles, and a sample is immutable, so it is handed out again.
    """

    def __init__(self, gpu: str, uuid: str) -> None:
        self.base = {"gpu": gpu, "uuid": uuid}
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}

    def __call__(self, family: MetricFamily, value: float, **extra: str) -> Sample:
        key = (family.name, tuple(extra.items()))
        last = self._last.get(key)
        if last is None:
            last = self._last[key] = family.sample(value, **self.base, **extra)
        else:
            last = self._last[key] = last.with_value(float(value))
        return last

    def __len__(self) -> int:
        """How many series are kept (their labels and last sample)."""
        return len(self._last)

    def uncached(self, family: MetricFamily, value: float, **extra: str) -> Sample:
        """A sample whose labels come and go (pids, MIG UUIDs): not kept, so nothing piles up."""
        return family.sample(value, **self.base, **extra)


class LinkStates:
    """NVLink link states as samples; a link is exported from the first time it is seen active.

    NVML reports a state for every link a chip has, connected or not: a PCIe board or an unused
    port would otherwise show links "down" forever. A link that was active once and is down now
    is exported as 0; one that comes up late (fabric manager starting after the exporter)
    appears when it does.
    """

    def __init__(self, series: Series) -> None:
        self.s = series
        self.seen: set[int] = set()

    def sample(self, link: int, active: bool) -> Sample | None:
        if active:
            self.seen.add(link)
        elif link not in self.seen:
            return None
        return self.s(catalog.GPU_NVLINK_LINK_UP, 1 if active else 0, link=str(link))


@dataclass(frozen=True)
class Reader:
    """One kept reading of a GPU: what it is called in logs, and how to do it."""

    name: str
    read: Read


@dataclass
class Probe:
    """What a GPU answered when probed: the readers to run each cycle and what it lacks."""

    readers: list[Reader] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    static: list[Sample] = field(default_factory=list)  # values that never change (max clocks)
    mig_mode: int | None = None  # None: the GPU has no MIG; else NVML's current mode
    mig_slots: int = 0


def raise_if_fatal(exc: BaseException) -> ErrorClass:
    """Re-raise a lost GPU or a dead library as GpuLost / LibraryDown; else return the class."""
    kind = classify(exc)
    if kind is ErrorClass.GPU:
        raise GpuLost(describe(exc)) from exc
    if kind is ErrorClass.LIBRARY:
        raise LibraryDown(describe(exc)) from exc
    return kind


def _first_supported(
    handle: Handle, name: str, alternatives: Iterable[Read]
) -> tuple[Reader | None, list[Sample]]:
    """The first alternative NVML supports on this GPU (and its first answer), or None."""
    for read in alternatives:
        try:
            return Reader(name, read), read(handle)
        except AttributeError:  # this nvidia-ml-py predates the function
            continue
        except NVML_EXCEPTIONS as exc:
            if raise_if_fatal(exc) is ErrorClass.TRANSIENT:
                log.debug("probe of %s: %s (kept, retried each cycle)", name, describe(exc))
                return Reader(name, read), []
    return None, []


class GpuReaders:
    """Builds and probes the readers of one GPU, bound to its `Series`."""

    def __init__(self, series: Series, *, processes: Read | None = None) -> None:
        self.s = series
        self.processes = processes
        self.links = LinkStates(series)

    # --- the plain readers, each with the families it fills (for the unsupported list) -------

    def utilization(self, h: Handle) -> list[Sample]:
        u = pynvml.nvmlDeviceGetUtilizationRates(h)
        return [
            self.s(catalog.GPU_UTILIZATION, u.gpu / 100.0),
            self.s(catalog.GPU_MEMORY_COPY_UTILIZATION, u.memory / 100.0),
        ]

    def memory_v2(self, h: Handle) -> list[Sample]:
        m = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        return [
            self.s(catalog.GPU_MEMORY_USED, m.used),
            self.s(catalog.GPU_MEMORY_FREE, m.free),
            self.s(catalog.GPU_MEMORY_TOTAL, m.total),
            self.s(catalog.GPU_MEMORY_RESERVED, m.reserved),
        ]

    def memory_v1(self, h: Handle) -> list[Sample]:
        # Drivers before R510 have no v2: their "used" includes the driver's reservation and
        # there is no reserved figure, so gpu_memory_reserved_bytes stays absent.
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        return [
            self.s(catalog.GPU_MEMORY_USED, m.used),
            self.s(catalog.GPU_MEMORY_FREE, m.free),
            self.s(catalog.GPU_MEMORY_TOTAL, m.total),
        ]

    def temperature_v(self, h: Handle) -> list[Sample]:
        t = pynvml.nvmlDeviceGetTemperatureV(h, pynvml.NVML_TEMPERATURE_GPU)
        return [self.s(catalog.GPU_TEMPERATURE, t, sensor="gpu")]

    def temperature_legacy(self, h: Handle) -> list[Sample]:
        t = pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        return [self.s(catalog.GPU_TEMPERATURE, t, sensor="gpu")]

    def power(self, h: Handle) -> list[Sample]:
        return [self.s(catalog.GPU_POWER, pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)]

    def power_limit(self, h: Handle) -> list[Sample]:
        limit = pynvml.nvmlDeviceGetEnforcedPowerLimit(h)
        return [self.s(catalog.GPU_POWER_LIMIT, limit / 1000.0)]

    def energy(self, h: Handle) -> list[Sample]:
        mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        return [self.s(catalog.GPU_ENERGY, mj / 1000.0)]

    def clock(self, name: str) -> Read:
        kind = CLOCKS[name]

        def read(h: Handle) -> list[Sample]:
            mhz = pynvml.nvmlDeviceGetClockInfo(h, kind)
            return [self.s(catalog.GPU_CLOCK, mhz * MHZ, clock=name)]

        return read

    def max_clock(self, name: str) -> Read:
        kind = CLOCKS[name]

        def read(h: Handle) -> list[Sample]:
            mhz = pynvml.nvmlDeviceGetMaxClockInfo(h, kind)
            return [self.s(catalog.GPU_CLOCK_MAX, mhz * MHZ, clock=name)]

        return read

    def _reasons(self, mask: int) -> list[Sample]:
        return [
            self.s(catalog.GPU_CLOCK_EVENT_ACTIVE, 1 if mask & bit else 0, reason=reason)
            for reason, bit in CLOCK_EVENT_REASONS.items()
        ]

    def clock_events(self, h: Handle) -> list[Sample]:
        return self._reasons(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h))

    def clock_throttle_legacy(self, h: Handle) -> list[Sample]:
        return self._reasons(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))

    def pcie_replays(self, h: Handle) -> list[Sample]:
        return [self.s(catalog.GPU_PCIE_REPLAYS, pynvml.nvmlDeviceGetPcieReplayCounter(h))]

    def remapped_rows(self, h: Handle) -> list[Sample]:
        corr, unc, pending, failure = pynvml.nvmlDeviceGetRemappedRows(h)
        return [
            self.s(catalog.GPU_REMAPPED_ROWS, corr, kind="correctable"),
            self.s(catalog.GPU_REMAPPED_ROWS, unc, kind="uncorrectable"),
            self.s(catalog.GPU_ROW_REMAP_PENDING, 1 if pending else 0),
            self.s(catalog.GPU_ROW_REMAP_FAILURE, 1 if failure else 0),
        ]

    def nvlink_states(self, links: list[int]) -> Read:
        """Link states one nvmlDeviceGetNvLinkState call per link (drivers without the field)."""

        def read(h: Handle) -> list[Sample]:
            out = []
            for link in links:
                sample = self.links.sample(link, bool(pynvml.nvmlDeviceGetNvLinkState(h, link)))
                if sample is not None:
                    out.append(sample)
            return out

        return read

    def fields(self, scalars: list[int], data_links: list[int], state_links: list[int]) -> Read:
        """Device fields, NVLink data counters and link states in one call, each entry with its
        own return.

        A data entry that fails this cycle drops both NVLink byte totals for the cycle (a sum
        missing one link would look like a counter reset); a scalar or state entry that fails
        drops only its own series.
        """
        request = FieldRequest(
            [(fid, 0) for fid in scalars]
            + [(TX, link) for link in data_links]
            + [(RX, link) for link in data_links]
            + [(LINK_STATE, link) for link in state_links]
        )
        entries = [SCALAR_FIELDS[fid] for fid in scalars]
        n, m = len(scalars), len(scalars) + 2 * len(data_links)
        success = pynvml.NVML_SUCCESS

        def read(h: Handle) -> list[Sample]:
            values = request.ask(h)
            out: list[Sample] = []
            for (family, extra), fv in zip(entries, values[:n], strict=True):
                if fv.nvmlReturn != success:
                    _entry_failed(fv)
                    continue
                out.append(self.s(family, field_value(fv), **extra))
            if data_links:
                tx = rx = 0.0
                ok = True
                for (fid, _link), fv in zip(request.fields[n:m], values[n:m], strict=True):
                    if fv.nvmlReturn != success:
                        _entry_failed(fv)
                        ok = False
                    elif fid == TX:
                        tx += field_value(fv)
                    else:
                        rx += field_value(fv)
                if ok:
                    out.append(self.s(catalog.GPU_NVLINK_TRANSMIT, tx * KIB))
                    out.append(self.s(catalog.GPU_NVLINK_RECEIVE, rx * KIB))
            for link, fv in zip(state_links, values[m:], strict=True):
                if fv.nvmlReturn != success:
                    _entry_failed(fv)
                    continue
                sample = self.links.sample(link, int(field_value(fv)) in LINK_STATES_UP)
                if sample is not None:
                    out.append(sample)
            return out

        return read

    # --- the probe ---------------------------------------------------------------------------

    def probe(self, h: Handle) -> Probe:
        """Try every reading once; keep what this GPU answers. Raises GpuLost / LibraryDown."""
        p = Probe()

        def keep(name: str, families: list[str], *alternatives: Read) -> list[Sample]:
            reader, first = _first_supported(h, name, alternatives)
            if reader is None:
                p.unsupported.extend(families)
            else:
                p.readers.append(reader)
            return first

        keep(
            "utilization",
            [catalog.GPU_UTILIZATION.name, catalog.GPU_MEMORY_COPY_UTILIZATION.name],
            self.utilization,
        )
        mem = [catalog.GPU_MEMORY_USED, catalog.GPU_MEMORY_FREE, catalog.GPU_MEMORY_TOTAL]
        first = keep("memory", [f.name for f in mem], self.memory_v2, self.memory_v1)
        no_v2 = len(first) == 3  # memory_v1 answered
        if no_v2 or catalog.GPU_MEMORY_USED.name in p.unsupported:
            p.unsupported.append(catalog.GPU_MEMORY_RESERVED.name)
        keep(
            "temperature",
            [f"{catalog.GPU_TEMPERATURE.name}{{sensor=gpu}}"],
            self.temperature_v,
            self.temperature_legacy,
        )
        keep("power", [catalog.GPU_POWER.name], self.power)
        keep("power limit", [catalog.GPU_POWER_LIMIT.name], self.power_limit)
        keep("energy", [catalog.GPU_ENERGY.name], self.energy)
        for name in CLOCKS:
            keep(f"{name} clock", [f"{catalog.GPU_CLOCK.name}{{clock={name}}}"], self.clock(name))
            # The maximum is a property of the board: read once here, exported each cycle.
            reader, first = _first_supported(h, f"{name} max clock", [self.max_clock(name)])
            if reader is None:
                p.unsupported.append(f"{catalog.GPU_CLOCK_MAX.name}{{clock={name}}}")
            p.static.extend(first)  # empty after a transient error: absent until re-probed
        keep(
            "clock event reasons",
            [catalog.GPU_CLOCK_EVENT_ACTIVE.name],
            self.clock_events,
            self.clock_throttle_legacy,
        )
        keep("pcie replays", [catalog.GPU_PCIE_REPLAYS.name], self.pcie_replays)
        keep(
            "remapped rows",
            [
                catalog.GPU_REMAPPED_ROWS.name,
                catalog.GPU_ROW_REMAP_PENDING.name,
                catalog.GPU_ROW_REMAP_FAILURE.name,
            ],
            self.remapped_rows,
        )
        links = self._probe_links(h)
        if not links:
            p.unsupported.append(catalog.GPU_NVLINK_LINK_UP.name)
        self._probe_fields(h, links, p)
        self._probe_mig(h, p)
        if self.processes is not None:
            keep("processes", [catalog.GPU_PROCESS_MEMORY_USED.name], self.processes)
        return p

    def _probe_links(self, h: Handle) -> list[int]:
        """The NVLink links NVML reports a state for (none on a PCIe board without a bridge)."""
        links = []
        for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
            try:
                pynvml.nvmlDeviceGetNvLinkState(h, link)
            except pynvml.NVMLError as exc:
                if raise_if_fatal(exc) is ErrorClass.UNSUPPORTED:
                    if exc.value == pynvml.NVML_ERROR_INVALID_ARGUMENT:
                        break  # past the last link
                    continue
            links.append(link)
        return links

    def _probe_fields(self, h: Handle, links: list[int], p: Probe) -> None:
        """Keep the field entries this GPU answers; link states by field where the driver can,
        else one call per link."""
        scalars = [f for f in SCALAR_FIELDS if links or f not in NVLINK_ONLY_FIELDS]
        request = [(f, 0) for f in scalars]
        request += [(TX, link) for link in links] + [(RX, link) for link in links]
        request += [(LINK_STATE, link) for link in links]
        try:
            values = list(FieldRequest(request).ask(h))
        except pynvml.NVMLError as exc:
            if raise_if_fatal(exc) is ErrorClass.UNSUPPORTED:
                values = []
            else:  # transient: keep asking for everything, link states one call per link
                if links:
                    p.readers.append(Reader("nvlink state", self.nvlink_states(links)))
                p.readers.append(Reader("fields", self.fields(scalars, links, [])))
                return
        kept: list[int] = []
        dropped_links: set[int] = set()
        state_links: list[int] = []
        for (fid, scope), fv in zip(request, values, strict=False):  # values: [] if unsupported
            ret = int(fv.nvmlReturn)
            if ret != pynvml.NVML_SUCCESS and raise_if_fatal(pynvml.NVMLError(ret)) is (
                ErrorClass.UNSUPPORTED
            ):
                if fid in (TX, RX):
                    dropped_links.add(scope)
                continue
            if fid == LINK_STATE:
                state_links.append(scope)
            elif fid not in (TX, RX):
                kept.append(fid)
        data_links = [link for link in links if link not in dropped_links] if values else []
        if state_links != links:  # a driver without the state field: one call per link
            state_links = []
            if links:
                p.readers.append(Reader("nvlink state", self.nvlink_states(links)))
        for fid in scalars:
            if fid not in kept:
                family, extra = SCALAR_FIELDS[fid]
                detail = ",".join(f"{k}={v}" for k, v in extra.items())
                p.unsupported.append(f"{family.name}{{{detail}}}" if detail else family.name)
        if not links:
            p.unsupported.append(catalog.GPU_NVLINK_ERRORS.name)
        if not data_links:
            p.unsupported += [catalog.GPU_NVLINK_TRANSMIT.name, catalog.GPU_NVLINK_RECEIVE.name]
        if kept or data_links or state_links:
            p.readers.append(Reader("fields", self.fields(kept, data_links, state_links)))

    def _probe_mig(self, h: Handle, p: Probe) -> None:
        try:
            current, _pending = pynvml.nvmlDeviceGetMigMode(h)
        except pynvml.NVMLError as exc:
            if raise_if_fatal(exc) is ErrorClass.UNSUPPORTED:
                return  # not a MIG-capable GPU
            current = 0
        p.mig_mode = int(current)
        if current:
            try:
                p.mig_slots = int(pynvml.nvmlDeviceGetMaxMigDeviceCount(h))
            except pynvml.NVMLError as exc:
                raise_if_fatal(exc)
                p.mig_slots = 7  # the most any GPU has had so far


def _entry_failed(fv: Any) -> None:
    """A field entry failed this cycle: a lost GPU is raised, anything else skipped."""
    raise_if_fatal(pynvml.NVMLError(int(fv.nvmlReturn)))
