"""Counters DCGM does not keep: byte totals from its rate fields, Xid events from its last Xid.

Both work from the value *and its DCGM timestamp* (`ts`, microseconds), so reading the same
sample twice (a collection faster than DCGM's update) adds nothing.
"""

from __future__ import annotations

from typing import Any

from exporter.sources.dcgm.values import number
from exporter.sources.xid import XidCounters

USEC = 1_000_000.0


class RateCounter:
    """A byte counter integrated from DCGM's bytes-per-second samples (PCIe, NVLink).

    Each new sample adds `rate * (its ts - the previous sample's ts)`: DCGM's rate is the
    average over the period ending at its timestamp, so with one sample per period the total
    is exact. When samples are skipped (collection slower than the watch), the latest rate
    stands for the whole gap. A blank sample (profiling paused, not supported) breaks the chain:
    the next valid sample starts a new one, and nothing is added for the time in between. The
    total starts at 0 when the exporter starts and only grows (it survives reconnects).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self._last_ts: int | None = None

    def observe(self, value: Any) -> float | None:
        """Take the latest DCGM value; the total, or None while the rate is blank."""
        rate = number(value)
        if rate is None:
            self._last_ts = None
            return None
        ts = int(getattr(value, "ts", 0) or 0)
        if self._last_ts is not None and ts > self._last_ts:
            self.total += max(rate, 0.0) * (ts - self._last_ts) / USEC
        if self._last_ts is None or ts > self._last_ts:
            self._last_ts = ts
        return self.total

    def restart(self) -> None:
        """Forget the last timestamp (a new hostengine keeps its own clock of samples)."""
        self._last_ts = None


class XidEvents:
    """Xid events of one GPU from DCGM's Xid field (230), which holds the *last* Xid seen.

    A sample with a newer timestamp than the last one seen and a non-zero, non-blank value is
    one event of that code, counted into the shared XidCounters. What this cannot see:

    - several Xids between two collections: only the last is counted (GetLatest returns one
      sample per field);
    - an Xid from before the exporter's first reading (or before a reconnect's first reading,
      when its timestamp is not newer than what was seen last): the first sample seen is taken
      as the starting point, not as an event, as the NVML source counts only what happens
      while it runs;
    - an Xid whose sample DCGM dropped (older than the watch's keep age) before it was read.
    """

    def __init__(self, counters: XidCounters, index: int) -> None:
        self.counters = counters
        self.index = index
        self._last_ts: int | None = None  # None until the first reading

    def observe(self, value: Any) -> int | None:
        """Take the latest Xid sample; the code counted, or None when it is not a new event."""
        code = number(value)
        ts = int(getattr(value, "ts", 0) or 0) if value is not None else 0
        if self._last_ts is None:
            self._last_ts = ts if code is not None else 0
            return None
        if code is None or ts <= self._last_ts:
            return None
        self._last_ts = ts
        if int(code) == 0:
            return None
        self.counters.record(self.index, int(code))
        return int(code)
