"""The PyTorch caching allocator of this process, per CUDA device (`torch.cuda.memory_stats`),
and what the allocator series of any process share: the figures and the GPU they are on.

What nvidia-smi cannot tell: how much of the memory PyTorch reserved is held by live tensors,
and how much is stranded in partly used segments (inactive split) that `empty_cache()` cannot
return: the fragmentation an OOM message points at. With `expandable_segments:True` PyTorch
does not report inactive split bytes (pytorch issue #159564): the series is then absent and the
fragmentation ratio falls back to (reserved - allocated) / reserved.

Absent on CPU, and never the one to initialize CUDA: a process that has not touched CUDA yet
has no allocator to report, and creating a CUDA context from a scrape would cost device memory.
The serving processes beside the exporter report theirs through the probe
(`exporter/probe`, read by `exporter.sources.torch_probe`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping

from exporter import catalog
from exporter.probe import procfs
from exporter.probe.stats import (
    ALLOC_RETRIES,
    ALLOCATED,
    INACTIVE_SPLIT,
    OOMS,
    RESERVED,
    DeviceReading,
    StatsReader,
    TorchCudaStats,
    expandable_segments_enabled,
)
from exporter.samples import Sample

__all__ = ["GpuLookup", "TorchAllocatorSource", "allocator_samples", "expandable_segments_enabled"]

log = logging.getLogger(__name__)

#: NVML's spelling of a GPU or MIG device UUID → (NVML index of the GPU, the GPU's UUID).
GpuTable = dict[str, tuple[str, str]]


def allocator_samples(
    stats: Mapping[str, int],
    *,
    gpu: str,
    uuid: str,
    pid: str,
    process: str,
    expandable_segments: bool = False,
) -> list[Sample]:
    """The torch_cuda_* samples of one process on one device from its memory_stats dict."""
    allocated = float(stats.get(ALLOCATED, 0))
    reserved = float(stats.get(RESERVED, 0))
    split = None if expandable_segments else stats.get(INACTIVE_SPLIT)
    if reserved <= 0:
        fragmentation = 0.0
    elif split is not None:
        fragmentation = split / reserved
    else:  # not reported: the free share of what is reserved is the best bound left
        fragmentation = max(0.0, reserved - allocated) / reserved
    c = catalog
    labels = {"gpu": gpu, "uuid": uuid, "pid": pid, "process": process}
    out = [
        c.TORCH_CUDA_MEMORY_ALLOCATED.sample(allocated, **labels),
        c.TORCH_CUDA_MEMORY_RESERVED.sample(reserved, **labels),
    ]
    if split is not None:
        out.append(c.TORCH_CUDA_MEMORY_INACTIVE_SPLIT.sample(split, **labels))
    out += [
        c.TORCH_CUDA_FRAGMENTATION.sample(fragmentation, **labels),
        c.TORCH_CUDA_ALLOC_RETRIES.sample(stats.get(ALLOC_RETRIES, 0), **labels),
        c.TORCH_CUDA_OOMS.sample(stats.get(OOMS, 0), **labels),
    ]
    return out


def nvml_gpu_table() -> GpuTable:
    """Every GPU and MIG device NVML sees ({} without NVML): a MIG device maps to its GPU,
    whose index and UUID the GPU series carry."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception:
        return {}
    table: GpuTable = {}
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            except Exception as exc:
                log.debug("NVML GPU %d: %s", i, exc)
                continue
            table[uuid] = (str(i), uuid)
            for mig_uuid in _mig_uuids(pynvml, handle):
                table[mig_uuid] = (str(i), uuid)
    except Exception as exc:
        log.debug("NVML GPU lookup failed: %s", exc)
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return table


def _mig_uuids(pynvml, handle) -> list[str]:  # type: ignore[no-untyped-def]
    try:
        current, _ = pynvml.nvmlDeviceGetMigMode(handle)
        if current != pynvml.NVML_DEVICE_MIG_ENABLE:
            return []
        slots = pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except Exception:  # not MIG capable
        return []
    out = []
    for slot in range(slots):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            out.append(_text(pynvml.nvmlDeviceGetUUID(mig)))
        except Exception:
            continue  # an empty slot
    return out


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class GpuLookup:
    """The GPU a CUDA device is on, as the GPU series name it: `gpu` is NVML's index, `uuid`
    NVML's "GPU-..." spelling (torch spells a UUID without the prefix, and a MIG device by its
    own UUID: it maps to its GPU).

    The table comes from NVML, or from the simulated fleet with `--backend simulated`. A UUID
    the table does not know (no NVML in the exporter's container, a GPU not visible to it) is
    asked again at most every `refresh_after` seconds, and meanwhile labelled with "GPU-" and
    the device's node index as the process sees it: CUDA_VISIBLE_DEVICES' entry, else CUDA's
    ordinal, which is NVML's index when CUDA_DEVICE_ORDER=PCI_BUS_ID or every GPU is alike.
    """

    def __init__(
        self,
        table: Callable[[], GpuTable] = nvml_gpu_table,
        *,
        refresh_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = table
        self._table: GpuTable | None = None
        self._loaded_at = 0.0
        self._refresh_after = refresh_after
        self._clock = clock

    def find(self, device: DeviceReading) -> tuple[str, str]:
        """(gpu, uuid) labels of the GPU `device` is on."""
        names = _nvml_spellings(device.uuid)
        found = self._known(names)
        if found is None and self._clock() - self._loaded_at >= self._refresh_after:
            self._reload()
            found = self._known(names)
        if found is not None:
            return found
        index = device.physical_index if device.physical_index is not None else device.index
        return str(index), names[0]

    def _known(self, names: list[str]) -> tuple[str, str] | None:
        if self._table is None:
            self._reload()
        for name in names:
            if name in (self._table or {}):
                return (self._table or {})[name]
        return None

    def _reload(self) -> None:
        self._table = self._load()
        self._loaded_at = self._clock()


def _nvml_spellings(uuid: str) -> list[str]:
    if uuid.startswith(("GPU-", "MIG-")):
        return [uuid]
    return [f"GPU-{uuid}", f"MIG-{uuid}"]


class TorchAllocatorSource:
    """torch_cuda_* per CUDA device of this process; no series on CPU or before CUDA is used."""

    def __init__(
        self,
        reader: StatsReader | None = None,
        *,
        environ: Mapping[str, str] = os.environ,
        gpus: GpuLookup | None = None,
        name: str = "torch",
    ) -> None:
        self.name = name
        self._reader = reader if reader is not None else TorchCudaStats(environ)
        self._expandable = expandable_segments_enabled(environ)
        self._gpus = gpus or GpuLookup()
        self._pid = str(os.getpid())

    def collect(self) -> list[Sample]:
        if not self._reader.initialized():
            return []
        process = procfs.process_name()
        out: list[Sample] = []
        for dev in self._reader.devices():
            gpu, uuid = self._gpus.find(dev)
            out += allocator_samples(
                dev.stats,
                gpu=gpu,
                uuid=uuid,
                pid=self._pid,
                process=process,
                expandable_segments=self._expandable,
            )
        return out

    def close(self) -> None:
        """Nothing to release."""
