"""Per-process GPU memory (opt-in, `--collect.processes`): one series per compute process.

A process using several MIG devices of one GPU is listed once per device by NVML: its memory
is summed, so each (gpu, pid) is one series. Memory NVML cannot report (NVML_VALUE_NOT_AVAILABLE,
which pynvml turns into None) leaves the process out rather than exporting a made-up number.
"""

from __future__ import annotations

import os

import pynvml

from exporter import catalog
from exporter.probe.procfs import MAX_NAME, comm
from exporter.samples import Sample
from exporter.sources.nvml.readers import Handle, Read, Series


def process_name(pid: int) -> str:
    """The short name of a process: NVML's answer, else /proc's, else empty."""
    try:
        name = pynvml.nvmlSystemGetProcessName(pid)
    except pynvml.NVMLError:
        name = ""
    if not name:
        return comm(pid)
    return os.path.basename(str(name).strip())[:MAX_NAME]


def process_reader(series: Series) -> Read:
    """A reader of the compute processes of one GPU, remembering names while a pid lives."""
    names: dict[int, str] = {}

    def read(h: Handle) -> list[Sample]:
        used: dict[int, int] = {}
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if p.usedGpuMemory is None:
                continue
            used[p.pid] = used.get(p.pid, 0) + int(p.usedGpuMemory)
        for gone in names.keys() - used.keys():
            del names[gone]
        out = []
        for pid, memory in sorted(used.items()):
            name = names.get(pid)
            if name is None:
                name = names[pid] = process_name(pid)
            out.append(
                series.uncached(catalog.GPU_PROCESS_MEMORY_USED, memory, pid=str(pid), process=name)
            )
        return out

    return read
