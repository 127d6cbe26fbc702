"""One GPU as the DCGM source knows it, and how its field values become samples.

The same families as the NVML source, from the same quantities, converted to base units:
percent to ratio, MiB to bytes, MHz to hertz, mJ to joules. A blank value is an absent series.
The `gpu` label is the GPU's NVML index (DCGM field 52), so a dashboard or an alert reads the
same series whichever backend runs; DCGM's own GPU id is used when that field is blank.

A GPU DCGM reports lost (or detached, inaccessible) exports `gpu_info`, `gpu_up 0` and its Xid
counters only, until DCGM says it answers again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from exporter import catalog
from exporter.catalog import MetricFamily
from exporter.samples import Sample
from exporter.sources.clock_events import reasons_from_bitmask
from exporter.sources.dcgm import fields as F
from exporter.sources.dcgm.connection import LINK_NOT_SUPPORTED, LINK_UP, GpuIdentity
from exporter.sources.dcgm.counters import RateCounter, XidEvents
from exporter.sources.dcgm.fields import Field
from exporter.sources.dcgm.values import blank_kind, latest, number
from exporter.sources.nvml.readers import Series
from exporter.sources.xid import XidCounters, xid_meaning

log = logging.getLogger(__name__)

MIB = 1024.0 * 1024.0
MHZ = 1_000_000.0

#: Fields published as one series each: (field, family, scale to base unit, extra labels).
DIRECT: tuple[tuple[Field, MetricFamily, float, dict[str, str]], ...] = (
    (F.GPU_UTIL, catalog.GPU_UTILIZATION, 0.01, {}),
    (F.MEM_COPY_UTIL, catalog.GPU_MEMORY_COPY_UTILIZATION, 0.01, {}),
    (F.FB_USED, catalog.GPU_MEMORY_USED, MIB, {}),
    (F.FB_FREE, catalog.GPU_MEMORY_FREE, MIB, {}),
    (F.FB_TOTAL, catalog.GPU_MEMORY_TOTAL, MIB, {}),
    (F.FB_RESERVED, catalog.GPU_MEMORY_RESERVED, MIB, {}),
    (F.GPU_TEMP, catalog.GPU_TEMPERATURE, 1.0, {"sensor": "gpu"}),
    (F.MEMORY_TEMP, catalog.GPU_TEMPERATURE, 1.0, {"sensor": "memory"}),
    (F.POWER, catalog.GPU_POWER, 1.0, {}),
    (F.POWER_LIMIT, catalog.GPU_POWER_LIMIT, 1.0, {}),
    (F.ENERGY, catalog.GPU_ENERGY, 0.001, {}),
    (F.SM_CLOCK, catalog.GPU_CLOCK, MHZ, {"clock": "sm"}),
    (F.MEM_CLOCK, catalog.GPU_CLOCK, MHZ, {"clock": "memory"}),
    (F.VIDEO_CLOCK, catalog.GPU_CLOCK, MHZ, {"clock": "video"}),
    (F.MAX_SM_CLOCK, catalog.GPU_CLOCK_MAX, MHZ, {"clock": "sm"}),
    (F.MAX_MEM_CLOCK, catalog.GPU_CLOCK_MAX, MHZ, {"clock": "memory"}),
    (F.MAX_VIDEO_CLOCK, catalog.GPU_CLOCK_MAX, MHZ, {"clock": "video"}),
    (F.PCIE_REPLAYS, catalog.GPU_PCIE_REPLAYS, 1.0, {}),
    (F.ECC_SBE, catalog.GPU_ECC_ERRORS, 1.0, {"type": "corrected"}),
    (F.ECC_DBE, catalog.GPU_ECC_ERRORS, 1.0, {"type": "uncorrected"}),
    (F.ROWS_CORRECTABLE, catalog.GPU_REMAPPED_ROWS, 1.0, {"kind": "correctable"}),
    (F.ROWS_UNCORRECTABLE, catalog.GPU_REMAPPED_ROWS, 1.0, {"kind": "uncorrectable"}),
    (F.RECOVERY_ACTION, catalog.GPU_RECOVERY_ACTION, 1.0, {}),
)
#: Fields that are true/false: published as 1 or 0.
FLAGS: tuple[tuple[Field, MetricFamily], ...] = (
    (F.ROW_REMAP_PENDING, catalog.GPU_ROW_REMAP_PENDING),
    (F.ROW_REMAP_FAILURE, catalog.GPU_ROW_REMAP_FAILURE),
)
#: NVLink error totals (only for a GPU with NVLink links), by the `type` label.
NVLINK_ERRORS: tuple[tuple[Field, str], ...] = (
    (F.NVLINK_CRC_FLIT, "crc_flit"),
    (F.NVLINK_CRC_DATA, "crc_data"),
    (F.NVLINK_REPLAY, "replay"),
    (F.NVLINK_RECOVERY, "recovery"),
)
#: Profiling ratios (0-1 already).
PROFILING_RATIOS: tuple[tuple[Field, MetricFamily], ...] = (
    (F.SM_ACTIVE, catalog.GPU_SM_ACTIVE),
    (F.SM_OCCUPANCY, catalog.GPU_SM_OCCUPANCY),
    (F.TENSOR_ACTIVE, catalog.GPU_TENSOR_ACTIVE),
    (F.DRAM_ACTIVE, catalog.GPU_DRAM_ACTIVE),
)
#: Profiling rates (bytes/s) integrated into byte counters.
PROFILING_RATES: tuple[tuple[Field, MetricFamily], ...] = (
    (F.PCIE_TX_RATE, catalog.GPU_PCIE_TRANSMIT),
    (F.PCIE_RX_RATE, catalog.GPU_PCIE_RECEIVE),
    (F.NVLINK_TX_RATE, catalog.GPU_NVLINK_TRANSMIT),
    (F.NVLINK_RX_RATE, catalog.GPU_NVLINK_RECEIVE),
)
NVLINK_RATES = frozenset({F.NVLINK_TX_RATE.key, F.NVLINK_RX_RATE.key})

Values = Mapping[int, Any]  # field number -> pydcgm value series


class Gpu:
    """A GPU found at the first connection; `dcgm_id` may change when the hostengine restarts."""

    def __init__(
        self,
        ident: GpuIdentity,
        index: int,
        *,
        numbers: Mapping[str, int],
        xids: XidCounters,
    ) -> None:
        self.ident = ident
        self.dcgm_id = ident.dcgm_id
        self.index = index
        self.numbers = numbers
        self.series = Series(str(index), ident.uuid)
        self.lost_reason: str | None = None
        self.xid = XidEvents(xids, index)
        self.rates = {f.key: RateCounter() for f, _ in PROFILING_RATES}
        self._links_seen: set[int] = set()
        self._described = False
        xids.add_gpu(index, ident.uuid)
        self.info = catalog.GPU_INFO.sample(
            1,
            gpu=str(index),
            uuid=ident.uuid,
            name=ident.name,
            pci_bus_id=ident.pci_bus_id,
            driver_version=ident.driver_version,
            cuda_version="",  # a global DCGM field, not a GPU's: not read
            backend="dcgm",
        )

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None

    def value(self, values: Values, f: Field) -> Any:
        number_ = self.numbers.get(f.key)
        return None if number_ is None else latest(values.get(number_))

    def reconnected(self, dcgm_id: int) -> None:
        """The hostengine was (re)connected: its sample clock starts afresh."""
        self.dcgm_id = dcgm_id
        for rate in self.rates.values():
            rate.restart()

    def lose(self, reason: str) -> None:
        if not self.lost:
            log.warning(
                "GPU %d (%s) %s in DCGM: gpu_up is 0 and its other series are absent until "
                "DCGM reports it again",
                self.index,
                self.ident.uuid,
                reason,
            )
        self.lost_reason = reason

    def found(self) -> None:
        if self.lost:
            log.warning("GPU %d (%s) answers again: exporting it", self.index, self.ident.uuid)
        self.lost_reason = None

    def down(self) -> list[Sample]:
        return [self.info, self.series(catalog.GPU_UP, 0)]

    # --- one cycle ---------------------------------------------------------------------------

    def samples(self, basic: Values, profiling: Values | None, links: list[int] | None) -> list:
        """gpu_info, gpu_up 1 and every series with a value (call only for a GPU that answers).

        `profiling` is None while the profiling fields are not watched; `links` the
        DcgmNvLinkLinkState of each link, None when DCGM could not say.
        """
        s = self.series
        out: list[Sample] = [self.info, s(catalog.GPU_UP, 1)]
        for f, family, scale, extra in DIRECT:
            v = number(self.value(basic, f))
            if v is not None:
                out.append(s(family, v * scale, **extra))
        for f, family in FLAGS:
            v = number(self.value(basic, f))
            if v is not None:
                out.append(s(family, 1 if v else 0))
        mask = number(self.value(basic, F.CLOCK_EVENTS))
        if mask is not None:
            for reason, active in reasons_from_bitmask(int(mask)).items():
                out.append(s(catalog.GPU_CLOCK_EVENT_ACTIVE, int(active), reason=reason))
        has_nvlink = bool(links) and any(state != LINK_NOT_SUPPORTED for state in links or ())
        if has_nvlink:
            out += self._nvlink(basic, links or [])
        if profiling is not None:
            out += self._profiling(profiling, has_nvlink)
        if not self._described:
            self._described = True
            self._describe_blanks(basic)
        return out

    def _nvlink(self, basic: Values, links: list[int]) -> list[Sample]:
        """Link states (a link is exported from the first time it is up, as with NVML) and
        the error totals."""
        out = []
        for link, state in enumerate(links):
            if state == LINK_UP:
                self._links_seen.add(link)
            if link in self._links_seen:
                up = 1 if state == LINK_UP else 0
                out.append(self.series(catalog.GPU_NVLINK_LINK_UP, up, link=str(link)))
        for f, kind in NVLINK_ERRORS:
            v = number(self.value(basic, f))
            if v is not None:
                out.append(self.series(catalog.GPU_NVLINK_ERRORS, v, type=kind))
        return out

    def _profiling(self, values: Values, has_nvlink: bool) -> list[Sample]:
        out = []
        for f, family in PROFILING_RATIOS:
            v = number(self.value(values, f))
            if v is not None:
                out.append(self.series(family, min(max(v, 0.0), 1.0)))
        for f, family in PROFILING_RATES:
            if f.key in NVLINK_RATES and not has_nvlink:
                continue
            total = self.rates[f.key].observe(self.value(values, f))
            if total is not None:
                out.append(self.series(family, total))
        return out

    def observe_xid(self, basic: Values) -> None:
        """Count a new Xid (called every cycle, for a lost GPU too: Xid 79 comes with the loss)."""
        code = self.xid.observe(self.value(basic, F.XID))
        if code is not None:
            log.warning("GPU %d: Xid %d (%s)", self.index, code, xid_meaning(code))

    def has_values(self, basic: Values) -> bool:
        """True when any watched core field of this GPU has a value this cycle."""
        return any(number(self.value(basic, f)) is not None for f, *_ in DIRECT)

    def _describe_blanks(self, basic: Values) -> None:
        """Log once which series DCGM has no value for on this GPU (gpu-check reads it)."""
        missing = []
        for f, family, _, extra in DIRECT:
            if self.numbers.get(f.key) is None or number(self.value(basic, f)) is None:
                missing.append(_series_name(family, extra, self._kind(basic, f)))
        for f, family in FLAGS:
            if self.numbers.get(f.key) is None or number(self.value(basic, f)) is None:
                missing.append(_series_name(family, {}, self._kind(basic, f)))
        if number(self.value(basic, F.CLOCK_EVENTS)) is None:
            missing.append(catalog.GPU_CLOCK_EVENT_ACTIVE.name)
        if missing:
            log.info(
                "GPU %d (%s, %s): no value from DCGM here, absent: %s",
                self.index,
                self.ident.name,
                self.ident.uuid,
                ", ".join(missing),
            )

    def _kind(self, basic: Values, f: Field) -> str:
        number_ = self.numbers.get(f.key)
        if number_ is None or number_ not in basic:  # unknown to the bindings or the hostengine
            return "not watched"
        return blank_kind(self.value(basic, f))


def _series_name(family: MetricFamily, extra: dict[str, str], why: str) -> str:
    labels = ",".join(f"{k}={v}" for k, v in extra.items())
    return f"{family.name}{{{labels}}} ({why})" if labels else f"{family.name} ({why})"
