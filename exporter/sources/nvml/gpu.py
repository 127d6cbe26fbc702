"""One GPU as the NVML source knows it: identity, probe result, and whether it is lost.

A lost GPU (GpuIsLost, Unknown...) exports `gpu_info` and `gpu_up 0` only (the source adds its
Xid counters), the same convention as the simulated fleet's gpu_lost scenario; the source
re-initialises NVML with this GPU's backoff until it answers again.
"""

from __future__ import annotations

import logging

import pynvml

from exporter import catalog
from exporter.samples import Sample
from exporter.sources.nvml.errors import (
    NVML_EXCEPTIONS,
    Backoff,
    ErrorClass,
    GpuLost,
    classify,
    describe,
)
from exporter.sources.nvml.lookup import HandleUnknown, ask, find_handle, identity
from exporter.sources.nvml.mig import read_mig_devices
from exporter.sources.nvml.processes import process_reader
from exporter.sources.nvml.readers import GpuReaders, Handle, Probe, Series, raise_if_fatal

log = logging.getLogger(__name__)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Gpu:
    """A GPU found at the first NVML initialisation, known by its index there."""

    def __init__(
        self,
        index: int,
        *,
        driver_version: str,
        cuda_version: str,
        processes: bool,
        retry: Backoff,
    ) -> None:
        self.index = index
        self.uuid = ""
        self.name = ""
        self.pci_bus_id = ""
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.processes = processes
        self.retry = retry
        self.handle: Handle | None = None
        self.probe: Probe | None = None
        self.lost_reason: str | None = None  # why it is lost; None while it answers
        self.identified = False  # UUID, name and bus id asked (each may still be empty)
        self.series = Series(str(index), "")
        self._warned: set[tuple[str, int]] = set()
        self._info = self._info_sample()

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None

    @property
    def unsupported(self) -> list[str]:
        return list(self.probe.unsupported) if self.probe else []

    def _info_sample(self) -> Sample:
        return catalog.GPU_INFO.sample(
            1,
            gpu=str(self.index),
            uuid=self.uuid,
            name=self.name,
            pci_bus_id=self.pci_bus_id,
            driver_version=self.driver_version,
            cuda_version=self.cuda_version,
            backend="nvml",
        )

    def _down(self) -> list[Sample]:
        return [self._info, self.series(catalog.GPU_UP, 0)]

    # --- attaching after an NVML initialisation ---------------------------------------------

    def attach(self) -> None:
        """Find this GPU's handle after an init; probe it when new or coming back from lost.

        Raises LibraryDown when NVML itself fails, HandleUnknown when a GPU never attached
        cannot be looked up here at all. A GPU that NVML says is gone or broken is lost; one
        that no lookup could find for want of support keeps its state and its last handle
        (nothing says it is gone: its next reading tells).
        """
        was_lost = self.lost
        try:
            handle = find_handle(self.index, self.uuid, self.pci_bus_id)
            if not self.uuid and not self.identified:
                self._identify(handle)
            self.handle = handle
            if self.probe is None or was_lost:
                self._probe()
        except GpuLost as exc:
            self._lose(str(exc))
            return
        except HandleUnknown as exc:
            if self.handle is None and not self.lost:
                raise
            self._warn_once("its handle", exc)
            return
        if was_lost:
            log.warning("GPU %d (%s) answers again: exporting it", self.index, self.uuid)
        self.lost_reason = None
        self.retry.reset()

    def _identify(self, handle: Handle) -> None:
        """UUID, name and bus id: each empty when NVML cannot say (never a reason for lost)."""
        uuid, pci_bus_id = identity(handle)
        name = ask(lambda: pynvml.nvmlDeviceGetName(handle), "nvmlDeviceGetName")
        self.uuid, self.pci_bus_id = uuid or "", pci_bus_id or ""
        self.name = _text(name) if name is not None else ""
        self.identified = True
        self.series = Series(str(self.index), self.uuid)
        self._info = self._info_sample()

    def _probe(self) -> None:
        reader = process_reader(self.series) if self.processes else None
        self.probe = GpuReaders(self.series, processes=reader).probe(self.handle)
        self._warned.clear()
        if self.probe.unsupported:
            log.info(
                "GPU %d (%s, %s): not supported by NVML here, absent: %s",
                self.index,
                self.name,
                self.uuid,
                ", ".join(self.probe.unsupported),
            )
        if self.probe.mig_mode:
            log.info("GPU %d is in MIG mode: %d MIG device slots", self.index, self.probe.mig_slots)

    def _lose(self, reason: str) -> None:
        wait = self.retry.failed()
        if not self.lost:
            log.warning(
                "GPU %d (%s) lost: %s; gpu_up is 0 and its other series are absent until NVML "
                "answers for it again (next try in %.0fs, then with backoff)",
                self.index,
                self.uuid or "uuid unknown",
                reason,
                wait,
            )
        self.lost_reason = reason

    # --- one cycle --------------------------------------------------------------------------

    def collect(self) -> list[Sample]:
        """gpu_info, gpu_up and every supported series; only the first two when lost."""
        if self.lost:
            return self._down()
        if self.probe is None:  # never attached (NVML could not look it up): nothing known
            return []
        try:
            self._follow_mig_mode()
            probe = self.probe
            out = [self._info, self.series(catalog.GPU_UP, 1), *probe.static]
            for reader in probe.readers:
                try:
                    out += reader.read(self.handle)
                except NVML_EXCEPTIONS as exc:
                    raise_if_fatal(exc)
                    self._warn_once(reader.name, exc)
            if probe.mig_mode:
                out += read_mig_devices(self.handle, probe.mig_slots, self.series)
        except GpuLost as exc:
            self._lose(str(exc))
            return self._down()
        return out

    def _follow_mig_mode(self) -> None:
        """Probe again when MIG mode was switched: what NVML supports changes with it."""
        if self.probe is None or self.probe.mig_mode is None:
            return
        try:
            current = int(pynvml.nvmlDeviceGetMigMode(self.handle)[0])
        except pynvml.NVMLError as exc:
            raise_if_fatal(exc)
            return
        if current != self.probe.mig_mode:
            log.warning("GPU %d: MIG mode is now %s: probing it again", self.index, current)
            self._probe()

    def _warn_once(self, what: str, exc: BaseException) -> None:
        code = int(getattr(exc, "value", -1)) if not isinstance(exc, HandleUnknown) else -2
        if (what, code) in self._warned:
            return
        self._warned.add((what, code))
        if isinstance(exc, HandleUnknown):
            log.warning(
                "GPU %d: NVML cannot look up %s after re-initialising (%s): keeping it",
                self.index,
                what,
                exc,
            )
            return
        note = "skipped this cycle" if classify(exc) is ErrorClass.TRANSIENT else "skipped"
        log.warning("GPU %d: reading %s failed: %s (%s)", self.index, what, describe(exc), note)


def cuda_version_text(version: int) -> str:
    """NVML's CUDA driver version integer (12040) as text (12.4)."""
    return f"{version // 1000}.{version % 1000 // 10}"
