"""Xid error codes and a thread-safe per-GPU Xid event counter.

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

#: Short meanings of the well-known Xid codes (NVIDIA's Xid catalog, abridged).
XID_MEANINGS: dict[int, str] = {
    8: "GPU stopped processing (channel idle timeout)",
    13: "Graphics engine exception (often an application fault such as an illegal access)",
    31: "GPU memory page fault (MMU fault)",
    32: "Invalid or corrupted push buffer stream",
    38: "Driver firmware error",
    43: "GPU stopped processing (the application's channel was reset)",
    45: "Preemptive cleanup after a previous error (contexts killed)",
    48: "Double-bit ECC error",
    61: "Internal micro-controller breakpoint or warning",
    62: "Internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded (reset the GPU to apply)",
    64: "ECC page retirement or row remapping recording failure",
    68: "Video processor exception",
    69: "Graphics engine class error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "High single-bit ECC error rate",
    94: "Contained ECC error (restart the affected application)",
    95: "Uncontained ECC error (reset the GPU)",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "Unrecovered ECC error",
    154: "GPU recovery action changed (reset or reboot required)",
}

#: Codes after which the GPU is dead or unusable until a reset, reboot or replacement.
DEAD_GPU_XIDS: frozenset[int] = frozenset({48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120})

#: Codes pre-seeded at 0 for every GPU.
WATCHED_XIDS: tuple[int, ...] = tuple(sorted(XID_MEANINGS))


def xid_meaning(code: int) -> str:
    """A short meaning of `code` ("unknown Xid" when it is not a well-known code)."""
    return XID_MEANINGS.get(code, "unknown Xid")


def is_dead_gpu_xid(code: int) -> bool:
    """True when `code` means the GPU is dead or unusable until reset or replaced."""
    return code in DEAD_GPU_XIDS


class XidCounters:
    """Xid event counts per (GPU index, code); safe to update and read from different threads."""

    def __init__(self, watched: Iterable[int] = WATCHED_XIDS) -> None:
        self._watched = tuple(sorted(set(watched)))
        self._lock = threading.Lock()
        self._uuids: dict[int, str] = {}
        self._counts: dict[int, dict[int, int]] = {}
        self._series: dict[tuple[int, int], Sample] = {}  # catalog-built, value 0

    def add_gpu(self, index: int, uuid: str) -> None:
        """Register a GPU and pre-seed every watched code at 0 (idempotent; keeps counts)."""
        with self._lock:
            self._uuids[index] = uuid
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
                for code, value in sorted(self._counts[i].items()):
                    series = self._series.get((i, code))
                    if series is None:
                        labels = {"gpu": str(i), "uuid": self._uuids[i], "xid": str(code)}
                        series = self._series[i, code] = catalog.GPU_XID_ERRORS.sample(0, **labels)
                    out.append(Sample(series.name, series.labels, float(value)))
            return out
