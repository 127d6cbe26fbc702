"""Xid events: an NVML event set read on its own thread into `gpu_xid_errors_total{xid}`.

The watcher waits in `nvmlEventSetWait` with a short timeout (100 ms), so `stop()` returns
within that timeout; the source stops it before any NVML shutdown (freeing an event set another
thread waits on is a use-after-free in the real library). Ten wake-ups a second cost next to
nothing; a longer wait would lengthen the cycle that re-initialises NVML.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterable

import pynvml

from exporter.sources.nvml.errors import ErrorClass, classify, describe
from exporter.sources.nvml.readers import Handle
from exporter.sources.xid import XidCounters, xid_meaning

log = logging.getLogger(__name__)

XID_EVENT = pynvml.nvmlEventTypeXidCriticalError


def handle_address(handle: Handle) -> int:
    """The address behind a device handle (what NVML puts in an event's `device`)."""
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)


class XidWatcher:
    """Counts Xid events of the registered GPUs into `counters` until stopped."""

    def __init__(self, counters: XidCounters, wait_ms: int = 100) -> None:
        self.counters = counters
        self.wait_ms = wait_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: object | None = None
        self._by_address: dict[int, int] = {}
        self.events = 0

    def start(self, gpus: Iterable[tuple[int, str, Handle]]) -> list[int]:
        """Register each (index, uuid, handle) for Xid events and start the thread.

        Returns the indices registered; their counters are pre-seeded at 0. A GPU whose events
        NVML does not support gets no Xid series (absent, not a reassuring 0).
        """
        try:
            self._event_set = pynvml.nvmlEventSetCreate()
        except pynvml.NVMLError as exc:
            log.warning("Xid events unavailable: nvmlEventSetCreate: %s", describe(exc))
            return []
        registered = []
        for index, uuid, handle in gpus:
            try:
                pynvml.nvmlDeviceRegisterEvents(handle, XID_EVENT, self._event_set)
            except pynvml.NVMLError as exc:
                if classify(exc) is ErrorClass.UNSUPPORTED:
                    log.info("GPU %d: NVML has no Xid events here (%s)", index, describe(exc))
                continue  # a lost GPU is registered again when it comes back
            self._by_address[handle_address(handle)] = index
            self.counters.add_gpu(index, uuid)
            registered.append(index)
        if not registered:
            self._free()
            return []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nvml-xid-events", daemon=True)
        self._thread.start()
        return registered

    def stop(self) -> None:
        """Stop the thread (within one wait timeout) and free the event set."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_ms / 1000.0 + 5.0)
            if self._thread.is_alive():
                log.warning("the Xid event thread did not stop; leaving its event set allocated")
                return
            self._thread = None
        self._free()

    def _free(self) -> None:
        if self._event_set is not None:
            try:
                pynvml.nvmlEventSetFree(self._event_set)
            except pynvml.NVMLError as exc:
                log.debug("nvmlEventSetFree: %s", describe(exc))
            self._event_set = None
        self._by_address.clear()

    def _run(self) -> None:
        failures: set[int] = set()
        while not self._stop.is_set():
            try:
                data = pynvml.nvmlEventSetWait(self._event_set, self.wait_ms)
            except pynvml.NVMLError as exc:
                if exc.value == pynvml.NVML_ERROR_TIMEOUT or self._stop.is_set():
                    continue
                if exc.value not in failures:  # once per kind of failure
                    failures.add(exc.value)
                    log.warning("waiting for Xid events: %s", describe(exc))
                self._stop.wait(1.0)
                continue
            if not data.eventType & XID_EVENT:
                continue
            index = self._by_address.get(handle_address(data.device))
            if index is None:
                log.warning("Xid %d from an unknown device handle: not counted", data.eventData)
                continue
            self.counters.record(index, int(data.eventData))
            self.events += 1
            code = int(data.eventData)
            log.warning("GPU %d: Xid %d (%s)", index, code, xid_meaning(code))
