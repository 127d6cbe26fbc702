"""Reading a process's PyTorch CUDA caching allocator (`torch.cuda.memory_stats`) per device.

Never the one to initialise CUDA: a process that has not created a CUDA context has no
allocator to report, and creating one from a monitoring thread would cost the process device
memory (and break a process that forks its workers afterwards). torch is not even imported
here unless the process has imported it already.

The reader is injectable (`StatsReader`): on a machine without a GPU PyTorch has no CUDA
allocator, so tests drive the probe and the exporter with a reader that answers like torch
(`tests/fake_cuda.py`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

ALLOCATED = "allocated_bytes.all.current"
RESERVED = "reserved_bytes.all.current"
INACTIVE_SPLIT = "inactive_split_bytes.all.current"
ALLOC_RETRIES = "num_alloc_retries"
OOMS = "num_ooms"
#: Allocations made since the process started (a device this process never allocated on
#: is left out: a tensor-parallel worker sees every GPU of its group but uses one).
ALLOCATIONS = "allocation.all.allocated"

#: The memory_stats keys the probe writes and the exporter reads (torch's own names).
KEPT = (ALLOCATED, RESERVED, INACTIVE_SPLIT, ALLOC_RETRIES, OOMS)

_ALLOC_CONF_VARIABLES = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")


@dataclass(frozen=True)
class DeviceReading:
    """One CUDA device as this process sees it."""

    index: int  # CUDA's ordinal in this process (CUDA_VISIBLE_DEVICES renumbers from 0)
    uuid: str  # as torch spells it: without NVML's "GPU-"/"MIG-" prefix
    stats: Mapping[str, int]  # torch.cuda.memory_stats(index)
    #: The GPU's index on the node as far as this process can tell: the CUDA_VISIBLE_DEVICES
    #: entry when it is a number, else the CUDA ordinal. NVML's index is preferred where the
    #: exporter can ask NVML (see exporter.sources.torch.GpuLookup).
    physical_index: int | None = None


class StatsReader(Protocol):
    """Where the allocator figures come from: torch in a serving process, a fake in tests."""

    def initialized(self) -> bool:
        """True once this process has a CUDA context (never creates one)."""
        ...

    def devices(self) -> list[DeviceReading]:
        """Every device this process has allocated on; only called once initialized()."""
        ...


def in_use(stats: Mapping[str, int]) -> bool:
    """True when the process has allocated on the device (or holds memory there)."""
    return any(stats.get(key, 0) > 0 for key in (ALLOCATIONS, RESERVED, ALLOC_RETRIES, OOMS))


def kept(stats: Mapping[str, int]) -> dict[str, int]:
    """The figures the probe writes, by torch's names (a key torch left out stays out)."""
    return {key: int(stats[key]) for key in KEPT if key in stats}


def expandable_segments_enabled(environ: Mapping[str, str]) -> bool:
    """True when the allocator config (`PYTORCH_CUDA_ALLOC_CONF`) turns expandable segments on:
    PyTorch then does not report inactive split bytes (pytorch issue #159564)."""
    for variable in _ALLOC_CONF_VARIABLES:
        for option in environ.get(variable, "").split(","):
            key, _, value = option.partition(":")
            if key.strip() == "expandable_segments":
                return value.strip().lower() == "true"
    return False


def physical_indices(count: int, environ: Mapping[str, str]) -> list[int | None]:
    """Each CUDA ordinal's node index from CUDA_VISIBLE_DEVICES (`2,3`: 0 is GPU 2); the
    ordinal itself when the variable is unset; None for an entry that is a UUID."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    out: list[int | None] = []
    for i in range(count):
        entry = entries[i] if i < len(entries) else ""
        out.append(int(entry) if entry.isdigit() else None)
    return out


class TorchCudaStats:
    """`torch.cuda.memory_stats` of every device this process allocated on. `cuda` stands in
    for `torch.cuda` (tests: tests/fake_cuda.py); by default, torch's, once imported."""

    def __init__(self, environ: Mapping[str, str] = os.environ, cuda: Any = None) -> None:
        self._environ = environ
        self._cuda = cuda
        self._uuids: dict[int, str] = {}

    def _module(self) -> Any:
        if self._cuda is not None:
            return self._cuda
        torch = sys.modules.get("torch")  # a process that never imported torch has no context
        return None if torch is None else torch.cuda

    def initialized(self) -> bool:
        cuda = self._module()
        return cuda is not None and bool(cuda.is_initialized())

    def devices(self) -> list[DeviceReading]:
        cuda = self._module()
        if cuda is None or not cuda.is_initialized():
            return []
        count = cuda.device_count()
        physical = physical_indices(count, self._environ)
        out = []
        for index in range(count):
            stats = cuda.memory_stats(index)
            if not in_use(stats):
                continue
            if index not in self._uuids:
                self._uuids[index] = str(cuda.get_device_properties(index).uuid)
            out.append(DeviceReading(index, self._uuids[index], stats, physical[index]))
        return out
