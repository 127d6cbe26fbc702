#!/usr/bin/env python3
"""What the allocator probe costs the serving process it runs in, and what reading the probes'
files costs the exporter; on the fake CUDA allocator (tests/fake_cuda.py), which builds
memory_stats' ~110-key dict in Python as torch's memory_stats() flattens its nested dict in
Python, so its time stands in for torch's share (scripts/gpu-check measures the real one).

Tables, measured side by side in one run:
1. one write (read memory_stats per device, encode, temp file + rename), CPU and wall time,
   for 1, 2 and 8 devices, beside the memory_stats reads alone, and the share of one core
   that is at a 1 s and a 5 s interval;
2. a serving loop in the main thread (1 ms steps of Python work) with and without the probe
   thread writing every 50 ms (20x the 1 s interval, so that many writes fall inside steps):
   step time p50/p99/max (what holding the GIL for a write does to a step) and the CPU of the
   whole process per second;
3. the exporter's torch-probe source: one collection over 1, 8 and 64 processes' files
   (parsed once, then unchanged files answered from the cache) and over 64 files that all
   changed.

Usage: .venv/bin/python bench/probe_overhead.py [--writes N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import percentile, table  # noqa: E402
from exporter.probe.record import ProbeRecord, encode  # noqa: E402
from exporter.probe.stats import TorchCudaStats  # noqa: E402
from exporter.probe.writer import Probe  # noqa: E402
from exporter.sources.torch import GpuLookup  # noqa: E402
from exporter.sources.torch_probe import ProbeDirectorySource  # noqa: E402
from tests.fake_cuda import GIB, FakeCuda, FakeDevice  # noqa: E402


def fake_cuda(devices: int) -> FakeCuda:
    return FakeCuda(
        [
            FakeDevice(f"{i:08x}-3b7e-4f4c-9d55-0123456789ab", 6 * GIB, 10 * GIB, GIB)
            for i in range(devices)
        ]
    )


SHM = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _filesystem(directory: Path) -> str:
    """The file system type of `directory`, from /proc/mounts (the longest matching mount)."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        _, point, fstype, *_ = line.split()
        if str(directory).startswith(point) and len(point) > len(best):
            best, kind = point, fstype
    return kind


def timed(fn, n: int) -> tuple[float, float]:
    """Median CPU (this thread) and wall seconds of one call."""
    cpu, wall = [], []
    for _ in range(n):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def write_costs(directories: list[Path], writes: int) -> None:
    rows = []
    for directory, devices in [(d, n) for d in directories for n in (1, 2, 8)]:
        cuda = fake_cuda(devices)
        reader = TorchCudaStats({}, cuda=cuda)
        probe = Probe(directory, 1.0, reader=reader)
        assert probe.write_once()
        read_cpu, _ = timed(reader.devices, writes)
        cpu, wall = timed(probe.write_once, writes)
        size = probe.path.stat().st_size
        rows.append(
            [
                _filesystem(directory),
                str(devices),
                us(read_cpu),
                us(cpu),
                us(wall),
                str(size),
                f"{cpu / 1.0 * 100:.4f}",
                f"{cpu / 5.0 * 100:.5f}",
            ]
        )
        probe.stop()
    table(
        "1. One probe write (median)",
        [
            "directory on",
            "devices",
            "memory_stats CPU us",
            "write CPU us",
            "write wall us",
            "file bytes",
            "% core @1s",
            "% core @5s",
        ],
        rows,
        "memory_stats: the reader alone (all devices); write: reader + encode + temp file + "
        "os.replace (most of a write on disk: renaming over the old file frees its inode; the "
        "GIL is released meanwhile). tmpfs is an emptyDir with medium: Memory, as the chart's.",
    )


def serving_loop(directory: Path, seconds: float, with_probe: bool) -> tuple[list[float], float]:
    """Step times of 1 ms Python steps in the main thread, and process CPU seconds/second."""
    probe = None
    if with_probe:
        probe = Probe(directory, 0.05, reader=TorchCudaStats({}, cuda=fake_cuda(2))).start()
    steps = []
    c0, w0 = time.process_time(), time.perf_counter()
    end = w0 + seconds
    while time.perf_counter() < end:
        s = time.perf_counter()
        x = 0
        while time.perf_counter() - s < 0.001:
            x += 1
        steps.append(time.perf_counter() - s)
    cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
    if probe is not None:
        probe.stop()
    return steps, cpu


def gil_effect(directory: Path) -> None:
    sys.setswitchinterval(0.005)  # CPython's default: a serving process does not change it
    rows = []
    for _ in range(2):  # alternate, so machine noise falls on both alike
        for label, with_probe in (("without probe", False), ("probe every 50 ms", True)):
            steps, cpu = serving_loop(directory, 3.0, with_probe)
            rows.append(
                [
                    label,
                    str(len(steps)),
                    f"{percentile(steps, 50) * 1e3:.3f}",
                    f"{percentile(steps, 99) * 1e3:.3f}",
                    f"{max(steps) * 1e3:.3f}",
                    f"{cpu:.3f}",
                ]
            )
    table(
        "2. A serving loop of 1 ms Python steps, 3 s per run, 2 devices (two runs each)",
        ["run", "steps", "p50 ms", "p99 ms", "max ms", "CPU s/s"],
        rows,
        f"threads: {threading.active_count()} at the end; the probe thread holds the GIL for "
        "its Python work only (os.write and os.replace release it).",
    )


def source_costs(directory: Path, writes: int) -> None:
    rows = []
    now = time.time()
    for processes in (1, 8, 64):
        for f in directory.iterdir():
            f.unlink()
        for pid in range(processes):
            devices = tuple(TorchCudaStats({}, cuda=fake_cuda(1)).devices())
            record = ProbeRecord(100_000 + pid, 1, 1, "python3", now, 5.0, False, devices)
            (directory / record.file_name).write_bytes(encode(record))
        src = ProbeDirectorySource(directory, gpus=GpuLookup(lambda: {}), clock=time.time)
        src.collect()
        cached_cpu, cached_wall = timed(src.collect, writes)

        def fresh(src=src) -> None:
            src._reads.clear()  # as if every file had changed since the last collection
            src.collect()

        fresh_cpu, fresh_wall = timed(fresh, max(10, writes // 4))
        rows.append(
            [str(processes), us(cached_cpu), us(cached_wall), us(fresh_cpu), us(fresh_wall)]
        )
    table(
        "3. The exporter's torch-probe source, one collection (median)",
        ["files", "unchanged CPU us", "unchanged wall us", "all changed CPU us", "wall us"],
        rows,
        "Files of processes in another pid namespace (no /proc look-up), 1 device each.",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000, help="timed calls per row")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=SHM) as shm:
        write_costs([Path(tmp), Path(shm)] if SHM else [Path(tmp)], args.writes)
        gil_effect(Path(tmp))
        source_costs(Path(tmp), args.writes)


if __name__ == "__main__":
    main()
