"""The profiling fields (SM, tensor and DRAM activity, PCIe and NVLink bytes): a field group of
their own, so that a profiling module that refuses them costs only the profiling families.

DCGM's profiling module needs a root hostengine, a data-center GPU, and the GPU's performance
counters to itself: watching its fields fails with REQUIRES_ROOT, PROFILING_NOT_SUPPORTED,
MODULE_NOT_LOADED, IN_USE (Nsight or another profiler holds them)... Then the profiling families
are absent, the source stays up with every other series, the log says why once per distinct
reason, and the watch is tried again with a slow backoff (the profiler may go away). While
profiling is paused (`dcgmi profile --pause`, for Nsight) DCGM stores blank values: the
families are absent then too, and the log says so once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
from typing import Any

from exporter.sources.dcgm.connection import Connection
from exporter.sources.dcgm.errors import ErrorClass, classify, profiling_reason
from exporter.sources.dcgm.gpu import PROFILING_RATES, PROFILING_RATIOS
from exporter.sources.dcgm.values import latest, number
from exporter.sources.nvml.errors import Backoff

log = logging.getLogger(__name__)

#: Cycles of blank profiling values after a watch starts before the log says so.
BLANK_CYCLES_BEFORE_LOG = 3

FAMILY_NAMES = ", ".join(f.name for _, f in (*PROFILING_RATIOS, *PROFILING_RATES))


class Profiling:
    """Whether the profiling fields are watched, and why not when they are not."""

    def __init__(self, field_ids: list[int], retry: Backoff) -> None:
        self.field_ids = field_ids
        self.retry = retry
        self.reason = "not watched yet"
        self._fg: Any = None
        self._said: set[str] = set()
        self._blank_cycles = 0
        self._had_values = False
        self._said_blank = False

    @property
    def watching(self) -> bool:
        return self._fg is not None

    def start(self, conn: Connection, interval: float) -> None:
        """Watch the profiling fields; a refusal is logged (once per reason) and retried later.

        A lost connection is raised: it is the source's business.
        """
        self._fg = None
        self._blank_cycles = 0
        if not self.field_ids:
            self._unavailable("these DCGM bindings know none of the profiling fields")
            return
        try:
            self._fg = conn.watch("profiling", self.field_ids, interval)
        except Exception as exc:
            if classify(exc) is ErrorClass.CONNECTION:
                raise
            self._unavailable(profiling_reason(exc))
            return
        self.retry.reset()
        if self._said:
            log.info("DCGM profiling fields are watched now: exporting %s", FAMILY_NAMES)
            self._said.clear()
        self.reason = ""

    def due(self) -> bool:
        """True when the profiling fields are not watched and it is time to try again."""
        return self._fg is None and self.retry.ready()

    def read(self, conn: Connection) -> dict[int, dict[int, Any]] | None:
        """This cycle's profiling values by GPU, or None when they are not watched."""
        if self._fg is None:
            return None
        try:
            values = conn.latest(self._fg)
        except Exception as exc:
            if classify(exc) is ErrorClass.CONNECTION:
                raise
            conn.unwatch(self._fg)
            self._fg = None
            self._unavailable(profiling_reason(exc))
            return None
        self._follow_blanks(values)
        return values

    def forget(self) -> None:
        """The connection is gone: its field group with it."""
        self._fg = None
        self.retry.reset()

    def _unavailable(self, reason: str) -> None:
        wait = self.retry.failed()
        self.reason = reason
        if reason not in self._said:
            self._said.add(reason)
            log.warning(
                "DCGM profiling unavailable: %s. %s are absent; every other GPU series carries "
                "on (trying again in %.0fs, then with backoff)",
                reason,
                FAMILY_NAMES,
                wait,
            )

    def _follow_blanks(self, values: dict[int, dict[int, Any]]) -> None:
        any_value = any(
            number(latest(series)) is not None
            for per_gpu in values.values()
            for series in per_gpu.values()
        )
        if any_value:
            if self._said_blank:
                log.info("DCGM profiling values are back: exporting %s", FAMILY_NAMES)
            self._had_values = True
            self._blank_cycles = 0
            self._said_blank = False
            return
        self._blank_cycles += 1
        if self._said_blank:
            return
        if self._had_values or self._blank_cycles >= BLANK_CYCLES_BEFORE_LOG:
            self._said_blank = True
            log.warning(
                "DCGM profiling values are blank on every GPU (profiling paused with `dcgmi "
                "profile --pause`, e.g. for Nsight, or not collected on these GPUs): %s are "
                "absent until they have values",
                FAMILY_NAMES,
            )
