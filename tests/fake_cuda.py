"""A stand-in for `torch.cuda` on a machine without a GPU: the caching allocator's
`memory_stats` (the same keys, pools and counters as torch's, inactive split left out under
expandable segments), device properties with a UUID spelt as torch spells it, and a CUDA
context that exists only once `init()` is called (torch.cuda.is_initialized()).

`exporter.probe.stats.TorchCudaStats(cuda=FakeCuda(...))` reads it exactly as it reads torch.

Run as a module, it is a serving process with the probe running on the fake:

    python -m tests.fake_cuda DIR INTERVAL SPEC_JSON

SPEC: {"devices": [{"uuid": "...", "allocated": N, "reserved": N, "inactive_split": N,
"retries": N, "ooms": N}], "init_after": SECONDS (default 0), "expandable": BOOL,
"env": {...} (e.g. CUDA_VISIBLE_DEVICES)}. It prints "ready" once the probe runs; each line
on stdin is a JSON command: {"device": I, "allocated": N, ...} changes a device's figures and
answers "ok"; end of input stops the probe (removing its file) and exits.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass

GIB = 2**30

#: The core statistics memory_stats() reports per pool and per metric type.
_COUNTS = ("allocation", "segment", "active", "inactive_split")
_BYTES = ("allocated_bytes", "reserved_bytes", "active_bytes", "inactive_split_bytes")


def memory_stats(
    allocated: int,
    reserved: int,
    inactive_split: int | None,
    retries: int = 0,
    ooms: int = 0,
    *,
    allocations: int = 120,
) -> dict[str, int]:
    """A dict shaped like torch.cuda.memory_stats(): every core statistic per pool and metric
    type, then the event counters. inactive_split None: the allocator did not report it (the
    inactive_split* keys are absent, as with expandable segments). `allocations`: how many
    allocations the process made on the device (0: it never used it)."""
    stats: dict[str, int] = {}
    used = allocations > 0
    figures: dict[str, int | None] = {
        "allocation": allocations,
        "allocated_bytes": allocated,
        "segment": 14 if used else 0,
        "reserved_bytes": reserved,
        "active": 130 if used else 0,
        "active_bytes": allocated + 4096 if used else 0,
        "inactive_split": 9 if inactive_split is not None and used else 0,
        "inactive_split_bytes": inactive_split,
        "requested_bytes": max(0, allocated - 512),
    }
    if inactive_split is None:
        del figures["inactive_split"], figures["inactive_split_bytes"]
    for name, current in figures.items():
        assert current is not None
        for pool, share in (("all", 1.0), ("large_pool", 0.9), ("small_pool", 0.1)):
            value = int(current * share)
            stats[f"{name}.{pool}.current"] = value
            stats[f"{name}.{pool}.peak"] = value + 1024 if used else 0
            stats[f"{name}.{pool}.allocated"] = value * 3 if name != "allocation" else value
            stats[f"{name}.{pool}.freed"] = value * 2
    stats.update(
        num_alloc_retries=retries,
        num_ooms=ooms,
        num_sync_all_streams=0,
        num_device_alloc=14 if used else 0,
        num_device_free=0,
        max_split_size=-1,
    )
    return stats


class FakeUuid:
    """torch's _CUDA_UUID: str() gives the bare UUID, without NVML's "GPU-"."""

    def __init__(self, text: str) -> None:
        self._text = text.removeprefix("GPU-")

    def __str__(self) -> str:
        return self._text


@dataclass
class FakeProperties:
    name: str
    uuid: FakeUuid
    total_memory: int


@dataclass
class FakeDevice:
    uuid: str
    allocated: int = 0
    reserved: int = 0
    inactive_split: int = 0
    retries: int = 0
    ooms: int = 0
    allocations: int = 120


class FakeCuda:
    """`torch.cuda` as the probe uses it, for devices given up front."""

    def __init__(
        self,
        devices: list[FakeDevice],
        *,
        initialized: bool = True,
        expandable_segments: bool = False,
    ) -> None:
        self.devices = devices
        self._initialized = initialized
        self.expandable_segments = expandable_segments
        self.lock = threading.Lock()
        self.stats_calls = 0

    def init(self) -> None:
        """What the first CUDA tensor does: create the context."""
        self._initialized = True

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return self._initialized

    def device_count(self) -> int:
        return len(self.devices)

    def memory_stats(self, device: int = 0) -> dict[str, int]:
        if not self._initialized:
            return {}  # torch answers {} before CUDA is initialised
        self.stats_calls += 1
        with self.lock:
            d = self.devices[device]
            split = None if self.expandable_segments else d.inactive_split
            return memory_stats(
                d.allocated, d.reserved, split, d.retries, d.ooms, allocations=d.allocations
            )

    def get_device_properties(self, device: int) -> FakeProperties:
        if not self._initialized:
            raise AssertionError("get_device_properties would initialise CUDA")
        return FakeProperties(
            "NVIDIA H100 80GB HBM3", FakeUuid(self.devices[device].uuid), 80 * GIB
        )

    def update(self, device: int, **figures: int) -> None:
        with self.lock:
            for key, value in figures.items():
                setattr(self.devices[device], key, value)


def main(argv: list[str]) -> int:
    """A serving process running the probe on the fake (see the module's docstring)."""
    import exporter.probe
    from exporter.probe.stats import TorchCudaStats

    directory, interval, spec_text = argv
    spec = json.loads(spec_text)
    cuda = FakeCuda(
        [FakeDevice(**d) for d in spec["devices"]],
        initialized=spec.get("init_after", 0) == 0,
        expandable_segments=spec.get("expandable", False),
    )
    if spec.get("expandable"):  # what the probe reads, as in a process started with it
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    reader = TorchCudaStats(spec.get("env", {}), cuda=cuda)
    exporter.probe.start(directory, float(interval), reader=reader)
    if spec.get("init_after", 0) > 0:
        time.sleep(spec["init_after"])
        cuda.init()
    print("ready", flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        cuda.update(command.pop("device"), **command)
        print("ok", flush=True)
    exporter.probe.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
