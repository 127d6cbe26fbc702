"""MIG devices of a GPU in MIG mode: their identity and memory, under gpu_instance/compute_instance.

NVML answers little on a MIG device handle (no utilization, power, clocks or temperature of its
own: those stay on the parent GPU, or are unsupported there in MIG mode and then absent). What
it does answer, memory and identity, is exported per MIG device. Instances can be created and
destroyed while the GPU runs, so the MIG devices are listed every cycle.
"""

from __future__ import annotations

import logging

import pynvml

from exporter import catalog
from exporter.samples import Sample
from exporter.sources.nvml.errors import ErrorClass, describe
from exporter.sources.nvml.readers import Handle, Series, raise_if_fatal

log = logging.getLogger(__name__)


def read_mig_devices(parent: Handle, slots: int, series: Series) -> list[Sample]:
    """Info and memory samples of every MIG device of `parent` (slots: its max MIG count)."""
    out: list[Sample] = []
    for index in range(slots):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, index)
        except pynvml.NVMLError as exc:
            raise_if_fatal(exc)
            continue  # NotFound: no MIG device in this slot
        try:
            out += _read_one(mig, series)
        except pynvml.NVMLError as exc:
            if raise_if_fatal(exc) is not ErrorClass.UNSUPPORTED:
                log.debug("MIG device %d: %s (skipped this cycle)", index, describe(exc))
    return out


def _read_one(mig: Handle, series: Series) -> list[Sample]:
    ids = {
        "gpu_instance": str(pynvml.nvmlDeviceGetGpuInstanceId(mig)),
        "compute_instance": str(pynvml.nvmlDeviceGetComputeInstanceId(mig)),
    }
    out = [
        series.uncached(
            catalog.GPU_MIG_INFO,
            1,
            **ids,
            mig_uuid=pynvml.nvmlDeviceGetUUID(mig),
            name=pynvml.nvmlDeviceGetName(mig),
        )
    ]
    memory = pynvml.nvmlDeviceGetMemoryInfo(mig)
    out.append(series(catalog.GPU_MIG_MEMORY_USED, memory.used, **ids))
    out.append(series(catalog.GPU_MIG_MEMORY_FREE, memory.free, **ids))
    out.append(series(catalog.GPU_MIG_MEMORY_TOTAL, memory.total, **ids))
    return out
