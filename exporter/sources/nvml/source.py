"""The NVML source: every GPU NVML can see, read each cycle by the sampler's worker thread.

Lifecycle:
- NVML is initialised on the first collection, not at construction. When that fails (no
  library, no driver, no GPU) collect() raises SourceUnavailable with one line saying why, the
  exporter keeps running with `exporter_source_up{source="nvml"} 0`, and the init is retried
  with backoff (1 s doubling to 60 s): cycles in between fail fast without touching NVML.
- Each GPU is probed once when found: what NVML does not support on it is absent, not retried.
- A GPU that reports GpuIsLost or Unknown exports gpu_up 0 (with gpu_info and its Xid counters)
  while the others carry on; at its backoff times the source re-initialises NVML (shutdown,
  init, handles found again by UUID, PCI bus id or checked index: `lookup`) and probes it
  afresh once it answers. Only NVML saying a GPU is gone or broken makes it lost: a lookup the
  driver lacks, another GPU's failure or the re-initialisation itself never does.
- Xid events are read by an XidWatcher thread, stopped around every re-initialisation.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import pynvml

from exporter.samples import Sample
from exporter.sources import SourceUnavailable
from exporter.sources.nvml.errors import (
    NVML_EXCEPTIONS,
    Backoff,
    GpuLost,
    LibraryDown,
    describe,
    init_failure_reason,
)
from exporter.sources.nvml.events import XidWatcher
from exporter.sources.nvml.gpu import Gpu, cuda_version_text
from exporter.sources.nvml.lookup import HandleUnknown, ask
from exporter.sources.xid import XidCounters

log = logging.getLogger(__name__)


class NvmlSource:
    """GPU health from NVML (nvidia-ml-py), one `Gpu` per device found at the first init."""

    name = "nvml"

    def __init__(
        self,
        *,
        collect_processes: bool = False,
        clock: Callable[[], float] = time.monotonic,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        event_wait_ms: int = 100,
    ) -> None:
        self.collect_processes = collect_processes
        self._clock = clock
        self._retry_args = (retry_initial, retry_max)
        self._retry = self._backoff()
        self._event_wait_ms = event_wait_ms
        self._lock = threading.Lock()
        self._initialized = False
        self._reason = "NVML not initialised yet"
        self._gpus: list[Gpu] = []
        self._xids = XidCounters()
        self._xid_gpus: set[int] = set()
        self._watcher: XidWatcher | None = None
        self.driver_version = ""
        self.cuda_version = ""
        self.inits = 0

    def _backoff(self) -> Backoff:
        return Backoff(*self._retry_args, clock=self._clock)

    # --- what tests and scripts/gpu-check look at -------------------------------------------

    @property
    def gpus(self) -> list[Gpu]:
        return list(self._gpus)

    def unsupported(self) -> dict[int, list[str]]:
        """Per GPU index, the series NVML said it does not support (decided at its probe)."""
        return {g.index: g.unsupported for g in self._gpus}

    # --- the Source protocol -----------------------------------------------------------------

    def collect(self) -> list[Sample]:
        with self._lock:
            if not self._initialized:
                self._start()
            elif any(g.lost and g.retry.ready() for g in self._gpus):
                self._reinitialize()
            try:
                out: list[Sample] = []
                for gpu in self._gpus:
                    out += gpu.collect()
                    if gpu.index in self._xid_gpus:
                        out += self._xids.samples(gpu.index)
                return out
            except LibraryDown as exc:
                self._fail(f"NVML stopped answering: {exc}")
                raise SourceUnavailable(self._reason) from None

    def close(self) -> None:
        """Stop the Xid thread and shut NVML down (skipped if a collection is hung in NVML)."""
        if not self._lock.acquire(timeout=2.0):
            log.warning("an NVML call is still hung at shutdown: not shutting NVML down")
            return
        try:
            self._stop_watcher()
            if self._initialized:
                with contextlib.suppress(pynvml.NVMLError):
                    pynvml.nvmlShutdown()
                self._initialized = False
        finally:
            self._lock.release()

    # --- initialisation ------------------------------------------------------------------------

    def _start(self) -> None:
        """Initialise NVML and attach every GPU, or raise SourceUnavailable (with backoff)."""
        if not self._retry.ready():
            raise SourceUnavailable(self._reason)
        try:
            pynvml.nvmlInit()
        except NVML_EXCEPTIONS as exc:
            self._fail(init_failure_reason(exc) + "; retrying with backoff", shutdown=False)
            raise SourceUnavailable(self._reason) from None
        self._initialized = True
        try:
            self._discover()
        except (*NVML_EXCEPTIONS, LibraryDown, GpuLost) as exc:
            self._fail(f"NVML initialised but failed: {_text(exc)}; retrying with backoff")
            raise SourceUnavailable(self._reason) from None
        except SourceUnavailable as exc:
            self._fail(str(exc))
            raise SourceUnavailable(self._reason) from None
        self._retry.reset()
        self.inits += 1

    def _discover(self) -> None:
        if not self._gpus:
            self._discover_first()
        else:
            self._count_again()
        unknown: list[str] = []
        for gpu in self._gpus:
            try:
                gpu.attach()
            except HandleUnknown as exc:  # never attached, and no lookup can find it here
                unknown.append(f"GPU {gpu.index}: {exc}")
        if unknown and all(g.probe is None and not g.lost for g in self._gpus):
            raise SourceUnavailable("NVML cannot look up any GPU here: " + unknown[0])
        for problem in unknown:
            log.warning("NVML cannot look this GPU up, not exporting it: %s", problem)
        if self.inits == 0:
            log.info(
                "NVML: driver %s, CUDA %s, %d GPU(s): %s",
                self.driver_version,
                self.cuda_version,
                len(self._gpus),
                "; ".join(f"{g.index}: {g.name or '?'} {g.uuid or '(lost)'}" for g in self._gpus),
            )
        self._start_watcher()

    def _discover_first(self) -> None:
        count = int(pynvml.nvmlDeviceGetCount())
        if count == 0:
            raise SourceUnavailable("NVML found no GPU; retrying with backoff")
        driver = ask(pynvml.nvmlSystemGetDriverVersion, "nvmlSystemGetDriverVersion")
        cuda = ask(pynvml.nvmlSystemGetCudaDriverVersion, "nvmlSystemGetCudaDriverVersion")
        self.driver_version = _text(driver) if driver is not None else ""
        self.cuda_version = cuda_version_text(int(cuda)) if cuda is not None else ""  # type: ignore[call-overload]
        self._gpus = [
            Gpu(
                i,
                driver_version=self.driver_version,
                cuda_version=self.cuda_version,
                processes=self.collect_processes,
                retry=self._backoff(),
            )
            for i in range(count)
        ]

    def _count_again(self) -> None:
        """After a re-initialisation the GPUs found at start stay; a new count is only said."""
        count = ask(pynvml.nvmlDeviceGetCount, "nvmlDeviceGetCount")
        if count is not None and int(count) != len(self._gpus):  # type: ignore[call-overload]
            log.warning(
                "NVML now counts %s GPUs, %d at start: exporting the GPUs found at start",
                count,
                len(self._gpus),
            )

    def _reinitialize(self) -> None:
        """Shut NVML down and start it again, so a lost GPU can be found (others keep state)."""
        lost = [g.index for g in self._gpus if g.lost]
        log.info("re-initialising NVML to look for lost GPU(s) %s", lost)
        self._stop_watcher()
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
        self._initialized = False
        self._start()

    def _fail(self, reason: str, *, shutdown: bool = True) -> None:
        """NVML is unusable: stop everything, remember why, and back off before the next init."""
        self._stop_watcher()
        if shutdown and self._initialized:
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()
        self._initialized = False
        self._reason = reason
        self._retry.failed()

    # --- Xid events ----------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        watcher = XidWatcher(self._xids, wait_ms=self._event_wait_ms)
        alive = [(g.index, g.uuid, g.handle) for g in self._gpus if not g.lost]
        self._xid_gpus.update(watcher.start(alive))
        self._watcher = watcher

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


def _text(value: object) -> str:
    if isinstance(value, BaseException):
        return describe(value) if isinstance(value, NVML_EXCEPTIONS) else str(value)
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
