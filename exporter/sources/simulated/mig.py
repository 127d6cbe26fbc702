"""Simulated MIG: GPUs of the fleet in MIG mode, each split into the same mixed layout of MIG
devices, with the identity and memory series the NVML source exports for real ones.

A layout uses the board's eight memory slices: 3g (four slices), 2g (two) and 1g (one), one
slice left free, with the GPU instance ids NVML gives these profiles on an H100/A100. Each
device's memory in use follows the parent GPU's (its share of the slices, with a wave of its
own), so a leak on the parent shows on its MIG devices too. L40S has no MIG.
"""

from __future__ import annotations

import math
import random
import uuid as uuidlib
from dataclasses import dataclass

from exporter import catalog
from exporter.samples import Sample

MEMORY_SLICES = 8
#: (compute slices, memory slices, GPU instance id) of each MIG device of a GPU in MIG mode.
LAYOUT: tuple[tuple[int, int, int], ...] = ((3, 4, 1), (2, 2, 5), (1, 1, 13))
#: Models that support MIG (the data-center boards).
MIG_MODELS = ("H100 SXM 80GB", "H200 SXM 141GB", "A100 SXM 80GB")


@dataclass(frozen=True, slots=True)
class MigDevice:
    gpu_instance: str
    compute_instance: str
    uuid: str
    name: str  # the profile, as NVML names the device: "MIG 3g.40gb"
    total_bytes: int
    period: float  # of its own usage wave
    phase: float


def mig_devices(gpu_index: int, seed: int, memory_total_bytes: int) -> list[MigDevice]:
    """The MIG devices of simulated GPU `gpu_index` (deterministic for a seed)."""
    rng = random.Random(f"simulated-mig:{seed}:{gpu_index}")
    slice_bytes = memory_total_bytes // MEMORY_SLICES
    devices = []
    for compute, memory, gi in LAYOUT:
        total = slice_bytes * memory
        gigabytes = round(total / 2**30)  # as NVML names profiles: 3g.40gb on an 80 GB board
        devices.append(
            MigDevice(
                gpu_instance=str(gi),
                compute_instance="0",
                uuid="MIG-" + str(uuidlib.UUID(int=rng.getrandbits(128), version=4)),
                name=f"MIG {compute}g.{gigabytes}gb",
                total_bytes=total,
                period=rng.uniform(200.0, 500.0),
                phase=rng.uniform(0.0, 2 * math.pi),
            )
        )
    return devices


def mig_samples(
    devices: list[MigDevice], labels: dict[str, str], used_share: float, t: float
) -> list[Sample]:
    """Info and memory series of each device; `used_share`: the parent GPU's used/usable."""
    out: list[Sample] = []
    for d in devices:
        ids = {**labels, "gpu_instance": d.gpu_instance, "compute_instance": d.compute_instance}
        wave = 0.05 * math.sin(2 * math.pi * t / d.period + d.phase)
        used = int(d.total_bytes * min(1.0, max(0.0, used_share + wave)))
        out += [
            catalog.GPU_MIG_INFO.sample(1, **ids, mig_uuid=d.uuid, name=d.name),
            catalog.GPU_MIG_MEMORY_USED.sample(used, **ids),
            catalog.GPU_MIG_MEMORY_FREE.sample(d.total_bytes - used, **ids),
            catalog.GPU_MIG_MEMORY_TOTAL.sample(d.total_bytes, **ids),
        ]
    return out
