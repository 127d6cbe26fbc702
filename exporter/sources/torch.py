"""The PyTorch caching allocator of this process, per CUDA device (`torch.cuda.memory_stats`).

What nvidia-smi cannot tell: how much of the memory PyTorch reserved is held by live tensors,
and how much is stranded in partly used segments (inactive split) that `empty_cache()` cannot
return: the fragmentation an OOM message points at. With `expandable_segments:True` PyTorch
does not report inactive split bytes (pytorch issue #159564): the series is then absent and the
fragmentation ratio falls back to (reserved - allocated) / reserved.

Absent on CPU, and never the one to initialize CUDA: a process that has not touched CUDA yet
has no allocator to report, and creating a CUDA context from a scrape would cost device memory.
torch is imported on first collection, so the exporter runs without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from exporter import catalog
from exporter.samples import Sample
from exporter.sources import SourceUnavailable

log = logging.getLogger(__name__)

ALLOCATED = "allocated_bytes.all.current"
RESERVED = "reserved_bytes.all.current"
INACTIVE_SPLIT = "inactive_split_bytes.all.current"
ALLOC_RETRIES = "num_alloc_retries"
OOMS = "num_ooms"

_ALLOC_CONF_VARIABLES = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")


def expandable_segments_enabled(environ: Mapping[str, str]) -> bool:
    """True when the allocator config (`PYTORCH_CUDA_ALLOC_CONF`) turns expandable segments on."""
    for variable in _ALLOC_CONF_VARIABLES:
        for option in environ.get(variable, "").split(","):
            key, _, value = option.partition(":")
            if key.strip() == "expandable_segments":
                return value.strip().lower() == "true"
    return False


def allocator_samples(
    stats: Mapping[str, int], *, gpu: str, uuid: str, expandable_segments: bool = False
) -> list[Sample]:
    """The torch_cuda_* samples of one device from its `torch.cuda.memory_stats` dict."""
    allocated = float(stats.get(ALLOCATED, 0))
    reserved = float(stats.get(RESERVED, 0))
    split = None if expandable_segments else stats.get(INACTIVE_SPLIT)
    if reserved <= 0:
        fragmentation = 0.0
    elif split is not None:
        fragmentation = split / reserved
    else:  # not reported: the free share of what is reserved is the best bound left
        fragmentation = max(0.0, reserved - allocated) / reserved
    c, labels = catalog, {"gpu": gpu, "uuid": uuid}
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


@dataclass(frozen=True)
class DeviceStats:
    index: int  # CUDA device index in this process
    uuid: str  # GPU-xxxxxxxx-..., as NVML spells it
    stats: Mapping[str, int]  # torch.cuda.memory_stats(index)


class AllocatorReader(Protocol):
    """Where the allocator figures come from (torch in production, a dict in tests)."""

    def devices(self) -> list[DeviceStats]: ...


class TorchCudaReader:
    """Reads `torch.cuda.memory_stats` for every device, once CUDA is initialized."""

    def __init__(self) -> None:
        try:
            import torch
        except ImportError:
            raise SourceUnavailable(
                "PyTorch is not installed: pip install 'gpu-inference-exporter[harness]'"
            ) from None
        self._torch = torch
        self._uuids: dict[int, str] = {}

    def devices(self) -> list[DeviceStats]:
        cuda = self._torch.cuda
        if not cuda.is_available() or not cuda.is_initialized():
            return []
        out = []
        for index in range(cuda.device_count()):
            if index not in self._uuids:
                self._uuids[index] = _nvml_uuid(str(cuda.get_device_properties(index).uuid))
            out.append(DeviceStats(index, self._uuids[index], cuda.memory_stats(index)))
        return out


def _nvml_uuid(text: str) -> str:
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def nvml_indices_by_uuid() -> dict[str, str]:
    """NVML's index of each GPU by UUID ({} without NVML): CUDA's device order and
    CUDA_VISIBLE_DEVICES renumber GPUs, NVML's index is the one the GPU series carry."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception:
        return {}
    try:
        indices = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            indices[uuid.decode() if isinstance(uuid, bytes) else uuid] = str(i)
        return indices
    except Exception as exc:
        log.debug("NVML index lookup failed: %s", exc)
        return {}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            log.debug("nvmlShutdown failed", exc_info=True)


class TorchAllocatorSource:
    """torch_cuda_* per CUDA device of this process; no series on CPU or before CUDA is used."""

    def __init__(
        self,
        reader: AllocatorReader | None = None,
        *,
        environ: Mapping[str, str] = os.environ,
        gpu_indices: Callable[[], dict[str, str]] = nvml_indices_by_uuid,
        name: str = "torch",
    ) -> None:
        self.name = name
        self._reader = reader
        self._expandable = expandable_segments_enabled(environ)
        self._gpu_indices = gpu_indices
        self._indices: dict[str, str] | None = None

    def collect(self) -> list[Sample]:
        if self._reader is None:
            self._reader = TorchCudaReader()
        devices = self._reader.devices()
        if devices and self._indices is None:
            self._indices = self._gpu_indices()
        out: list[Sample] = []
        for dev in devices:
            gpu = (self._indices or {}).get(dev.uuid, str(dev.index))
            out += allocator_samples(
                dev.stats, gpu=gpu, uuid=dev.uuid, expandable_segments=self._expandable
            )
        return out

    def close(self) -> None:
        """Nothing to release."""
