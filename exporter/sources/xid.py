"""A thread-safe per-GPU Xid event counter (the codes' table: exporter/xid_catalog.py).

The NVML source receives Xid events on a watcher thread (`nvmlEventSetWait`) and the sampler
reads the counts from its own thread; the simulated fleet counts its scripted events here too.
Every watched code is pre-seeded at 0 for each GPU, so an alert on `increase(...[5m]) > 0` sees
the 0 -> 1 step of the first event instead of a series that appears already at 1. A code that
is not watched still gets counted; its series appears with its first event.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from exporter import catalog
from exporter.samples import Sample
from exporter.xid_catalog import WATCHED_XIDS, xid_bucket, xid_meaning

#: The catalog's table lives at the base of the package, where generators can import it.
__all__ = ["WATCHED_XIDS", "XidCounters", "xid_bucket", "xid_meaning"]


class XidCounters:
    """Xid event counts per (GPU index, code); safe to update and read from different threads."""

    def __init__(self, watched: Iterable[int] = WATCHED_XIDS) -> None:
        self._watched = tuple(sorted(set(watched)))
        self._lock = threading.Lock()
        self._uuids: dict[int, str] = {}
        self._counts: dict[int, dict[int, int]] = {}
        self._series: dict[tuple[int, int], Sample] = {}  # the last sample of each series
        self._lists: dict[int, list[Sample]] = {}  # each GPU's samples until its counts change

    def add_gpu(self, index: int, uuid: str) -> None:
        """Register a GPU and pre-seed every watched code at 0 (idempotent; keeps counts)."""
        with self._lock:
            self._uuids[index] = uuid
            self._lists.pop(index, None)
            counts = self._counts.setdefault(index, {})
            for code in self._watched:
                counts.setdefault(code, 0)

    def record(self, index: int, code: int, count: int = 1) -> None:
        """Count `count` events of Xid `code` on GPU `index` (a registered GPU)."""
        if count < 0:
            raise ValueError(f"an Xid count only grows (got {count})")
        with self._lock:
            try:
                counts = self._counts[index]
            except KeyError:
                raise KeyError(f"GPU {index} is not registered with add_gpu") from None
            counts[code] = counts.get(code, 0) + count
            self._lists.pop(index, None)

    def count(self, index: int, code: int) -> int:
        """Events of `code` counted on GPU `index` so far (0 when none)."""
        with self._lock:
            return self._counts.get(index, {}).get(code, 0)

    def samples(self, index: int | None = None) -> list[Sample]:
        """`gpu_xid_errors_total` samples of one GPU, or of every GPU when `index` is None."""
        with self._lock:
            indices = sorted(self._counts) if index is None else [index]
            out: list[Sample] = []
            for i in indices:
                kept = self._lists.get(i)
                if kept is not None:
                    out += kept
                    continue
                kept = self._lists[i] = []
                for code, count in sorted(self._counts[i].items()):
                    value = float(count)
                    series = self._series.get((i, code))
                    if series is None:
                        labels = {"gpu": str(i), "uuid": self._uuids[i], "xid": str(code)}
                        series = catalog.GPU_XID_ERRORS.sample(value, **labels)
                        self._series[i, code] = series
                    else:  # counters rarely move: an unchanged one is handed out again
                        series = self._series[i, code] = series.with_value(value)
                    kept.append(series)
                out += kept
            return out
