"""One connection to DCGM through pydcgm: a hostengine at an address, or an embedded one.

Everything here calls pydcgm and lets its DCGMError through; the source decides what an error
means (errors.py). Field groups are made per connection: a restarted hostengine has forgotten
the old ones, and with persistAfterDisconnect off the hostengine drops ours when we go.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any

from exporter.sources.dcgm.bindings import Bindings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_MS = 2000
#: DcgmEntityStatus values (dcgm_structs_internal) of a GPU that no longer answers.
GPU_GONE_STATUSES = {3: "inaccessible", 4: "lost", 7: "detached"}
#: DcgmNvLinkLinkState values.
LINK_NOT_SUPPORTED, LINK_DISABLED, LINK_DOWN, LINK_UP = 0, 1, 2, 3

_names = itertools.count()


@dataclass(frozen=True)
class GpuIdentity:
    """What DCGM's device attributes say about a GPU."""

    dcgm_id: int
    uuid: str
    name: str
    pci_bus_id: str
    driver_version: str


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


class Connection:
    """A DCGM handle, its default all-GPUs group and the field groups watched on it."""

    def __init__(self, bindings: Bindings, address: str | None) -> None:
        self.b = bindings
        self.address = address  # None: embedded
        self.handle: Any = None
        self.system: Any = None
        self.group: Any = None
        self._field_groups: list[Any] = []

    @property
    def where(self) -> str:
        return "embedded DCGM" if self.address is None else f"hostengine {self.address}"

    def open(self) -> None:
        """Connect (or start embedded DCGM) and bind the all-GPUs group. Raises DCGMError."""
        pydcgm, structs = self.b.pydcgm, self.b.dcgm_structs
        if self.address is None:
            self.handle = pydcgm.DcgmHandle(ipAddress=None, opMode=structs.DCGM_OPERATION_MODE_AUTO)
        else:
            try:
                self.handle = pydcgm.DcgmHandle(
                    ipAddress=self.address, timeoutMs=CONNECT_TIMEOUT_MS
                )
            except TypeError:  # bindings older than the timeoutMs argument
                self.handle = pydcgm.DcgmHandle(ipAddress=self.address)
        self.system = self.handle.GetSystem()
        self.group = self.system.GetDefaultGroup()

    def close(self) -> None:
        """Drop the field groups and disconnect (stops embedded DCGM); never raises."""
        for fg in self._field_groups:
            with contextlib.suppress(Exception):
                fg.Delete()
        self._field_groups.clear()
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.handle.Shutdown()
        self.handle = self.system = self.group = None

    # --- GPUs ------------------------------------------------------------------------------

    def gpu_ids(self) -> list[int]:
        return [int(i) for i in self.system.discovery.GetAllSupportedGpuIds()]

    def identity(self, dcgm_id: int) -> GpuIdentity:
        ids = self.system.discovery.GetGpuAttributes(dcgm_id).identifiers
        return GpuIdentity(
            dcgm_id=dcgm_id,
            uuid=_text(ids.uuid),
            name=_text(ids.deviceName),
            pci_bus_id=_text(ids.pciBusId),
            driver_version=_text(ids.driverVersion),
        )

    def gone(self, dcgm_id: int) -> str | None:
        """Why DCGM says the GPU no longer answers (lost, detached...), or None."""
        status = self.system.discovery.GetGpuStatus(dcgm_id)
        return GPU_GONE_STATUSES.get(int(getattr(status, "value", status)))

    def nvlink_states(self) -> dict[int, list[int]]:
        """DcgmNvLinkLinkState of every link of every GPU, by DCGM GPU id."""
        status = self.system.discovery.GetNvLinkLinkStatus()
        out: dict[int, list[int]] = {}
        for i in range(int(status.numGpus)):
            gpu = status.gpus[i]
            out[int(gpu.entityId)] = [int(s) for s in gpu.linkState]
        return out

    # --- fields ----------------------------------------------------------------------------

    def watch(self, what: str, field_ids: list[int], interval: float) -> Any:
        """A field group of `field_ids`, watched on every GPU at `interval` seconds."""
        name = f"gpu-inference-exporter-{os.getpid()}-{next(_names)}-{what}"
        fg = self.b.pydcgm.DcgmFieldGroup(self.handle, name, field_ids)
        self._field_groups.append(fg)
        update_us = max(100_000, int(interval * 1_000_000))
        keep_age = max(30.0, 10 * interval)
        self.group.samples.WatchFields(fg, update_us, keep_age, 0)
        return fg

    def unwatch(self, fg: Any) -> None:
        with contextlib.suppress(Exception):
            self.group.samples.UnwatchFields(fg)
        with contextlib.suppress(Exception):
            fg.Delete()
        if fg in self._field_groups:
            self._field_groups.remove(fg)

    def update_all(self) -> None:
        """Ask the hostengine for one update of every watched field, and wait for it."""
        self.system.UpdateAllFields(True)

    def latest(self, fg: Any) -> dict[int, dict[int, Any]]:
        """The latest value series of every field of `fg`, by DCGM GPU id then field number."""
        return self.group.samples.GetLatest(fg).values
