#!/usr/bin/env python3
"""The allocator probe in a real CUDA process, for scripts/gpu-check.

As a program (`python scripts/gpu_check_probe.py DIR INTERVAL`) it is a small PyTorch serving
process: it starts the probe before touching CUDA (and checks that nothing is written until it
does), makes one out-of-memory error on purpose (an allocation twice the GPU's memory: the
allocator frees its cache, retries and raises), then leaves fragmented memory behind on GPU 0
and on the last GPU (3 MiB tensors in the allocator's 20 MiB segments, every other one freed),
measures what a probe write costs with the real `torch.cuda.memory_stats`, and prints its own
figures as one JSON line. It then waits until its input closes. With GIE_GPU_CHECK_FAKE_CUDA
(a tests/fake_cuda.py spec) it runs on the fake allocator instead: the CPU test of this check.

`check_probe()` (used by gpu_check.py) starts it beside an exporter reading DIR, compares what
the exporter's /metrics says about the process with the process's own figures, kills it and
checks that its series go and its file is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import exporter.probe  # noqa: E402
from exporter.probe.stats import KEPT, TorchCudaStats  # noqa: E402

MIB = 2**20
FAKE_ENV = "GIE_GPU_CHECK_FAKE_CUDA"
FIGURES = {  # memory_stats key → the family the exporter exports it as
    "allocated_bytes.all.current": "torch_cuda_memory_allocated_bytes",
    "reserved_bytes.all.current": "torch_cuda_memory_reserved_bytes",
    "inactive_split_bytes.all.current": "torch_cuda_memory_inactive_split_bytes",
    "num_alloc_retries": "torch_cuda_alloc_retries_total",
    "num_ooms": "torch_cuda_ooms_total",
}


# --- the serving process ------------------------------------------------------------------------


def _torch_workload() -> tuple[Callable[[], None], Callable[[], list[dict]], object]:
    import torch

    if not torch.cuda.is_available():
        raise LookupError("PyTorch sees no CUDA device")
    kept: list = []

    def use_cuda() -> None:
        last = torch.cuda.device_count() - 1
        for index in sorted({0, last}):
            device = torch.device("cuda", index)
            total = torch.cuda.get_device_properties(index).total_memory
            if index == 0:  # counted: num_alloc_retries and num_ooms
                with contextlib.suppress(torch.cuda.OutOfMemoryError):
                    torch.empty(2 * total, dtype=torch.uint8, device=device)
            blocks = [torch.empty(3 * MIB, dtype=torch.uint8, device=device) for _ in range(60)]
            kept.extend(blocks[::2])  # the others are freed: split blocks inside used segments
            torch.cuda.synchronize(device)

    def figures() -> list[dict]:
        out = []
        for index in range(torch.cuda.device_count()):
            stats = torch.cuda.memory_stats(index)
            if stats.get("allocation.all.allocated", 0) > 0:
                uuid = str(torch.cuda.get_device_properties(index).uuid)
                out.append({"index": index, "uuid": uuid, "stats": _kept(stats)})
        return out

    return use_cuda, figures, TorchCudaStats()


def _fake_workload(spec: dict) -> tuple[Callable[[], None], Callable[[], list[dict]], object]:
    from tests.fake_cuda import FakeCuda, FakeDevice

    cuda = FakeCuda([FakeDevice(**d) for d in spec["devices"]], initialized=False)

    def figures() -> list[dict]:
        return [
            {"index": i, "uuid": str(d.uuid), "stats": _kept(cuda.memory_stats(i))}
            for i, d in enumerate(cuda.devices)
        ]

    return cuda.init, figures, TorchCudaStats(cuda=cuda)


def _kept(stats: dict) -> dict:
    return {k: int(stats[k]) for k in KEPT if k in stats}


def serve(directory: str, interval: float) -> int:
    fake = os.environ.get(FAKE_ENV)
    try:
        use_cuda, figures, reader = _fake_workload(json.loads(fake)) if fake else _torch_workload()
    except ImportError as exc:
        why = f"{exc} in {sys.executable} (--probe-python: one with CUDA PyTorch)"
        print(json.dumps({"skip": why}), flush=True)
        return 3
    except LookupError as exc:
        print(json.dumps({"skip": str(exc)}), flush=True)
        return 3
    probe = exporter.probe.start(directory, interval, reader=reader)
    time.sleep(2 * interval)
    wrote_before_cuda = probe.path.exists()
    use_cuda()
    cpu = []
    for _ in range(200):
        started = time.thread_time()
        probe.write_once()
        cpu.append(time.thread_time() - started)
    truth = {
        "pid": os.getpid(),
        "file": str(probe.path),
        "wrote_before_cuda": wrote_before_cuda,
        "write_cpu_seconds": statistics.median(cpu),
        "reader": "the fake CUDA allocator" if fake else "torch.cuda.memory_stats",
        "devices": figures(),
    }
    print(json.dumps(truth), flush=True)
    sys.stdin.read()
    return 0


# --- the check ----------------------------------------------------------------------------------

Samples = list[tuple[str, dict[str, str], float]]


def check_probe(
    scrape: Callable[[], Samples],
    directory: Path,
    interval: float,
    python: str = sys.executable,
    timeout: float = 120.0,
) -> tuple[list[str], list[str]]:
    """(lines to print, problems) of running the serving process beside the exporter."""
    cmd = [python, str(Path(__file__).resolve()), str(directory), str(interval)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = _read_line(proc, timeout)
        if not line:
            return [], [f"the probe's serving process exited ({proc.poll()}) before its figures"]
        truth = json.loads(line)
        if "skip" in truth:
            return [f"skipped: {truth['skip']}"], []
        return _compare(scrape, truth, proc, interval)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline()


def _compare(scrape, truth: dict, proc, interval: float) -> tuple[list[str], list[str]]:
    pid = str(truth["pid"])
    lines = [
        f"serving process pid {pid}; a probe write with {truth['reader']}: "
        f"{truth['write_cpu_seconds'] * 1e6:.0f} us CPU, "
        f"{truth['write_cpu_seconds'] / 5 * 100:.4f} % of a core at the default 5 s interval"
    ]
    problems = []
    if truth["wrote_before_cuda"]:
        problems.append("the probe wrote a file before the process used CUDA")
    wanted = len(truth["devices"])
    samples = _until(scrape, lambda s: len(_devices_of(s, pid)) >= wanted, 10 * interval + 5)
    seen = _devices_of(samples, pid)
    gpus = {lb["uuid"]: lb["gpu"] for n, lb, _ in samples if n == "gpu_info"}
    header = ["family", *(f"GPU {d['uuid'][:8]}" for d in truth["devices"])]
    rows = []
    for key, family in FIGURES.items():
        row = [family]
        for d in truth["devices"]:
            uuid = d["uuid"] if d["uuid"].startswith(("GPU-", "MIG-")) else f"GPU-{d['uuid']}"
            got = seen.get(uuid, {}).get(family)
            want = d["stats"].get(key)
            row.append(f"{_fmt(got)} (process {_fmt(want)})")
            if got != want and not (want is None and got is None):
                problems.append(f"{family} on {uuid}: exporter {got}, process {want}")
        rows.append(row)
    for d in truth["devices"]:
        uuid = d["uuid"] if d["uuid"].startswith(("GPU-", "MIG-")) else f"GPU-{d['uuid']}"
        labels = seen.get(uuid, {}).get("labels")
        if labels is None:
            problems.append(f"no torch_cuda_* series of pid {pid} on {uuid}")
            continue
        if gpus and labels["gpu"] != gpus.get(uuid):
            problems.append(f"{uuid}: gpu label {labels['gpu']}, gpu_info says {gpus.get(uuid)}")
        if gpus and uuid not in gpus:
            problems.append(f"{uuid} is not a GPU the exporter's NVML lists")
        lines.append(f"{uuid}: gpu {labels['gpu']}, process {labels['process']!r}")
    lines += _table(header, rows)
    if truth["devices"] and not any(d["stats"].get("num_ooms") for d in truth["devices"]):
        problems.append("the process's out-of-memory error was not counted by torch")

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    gone = _until(scrape, lambda s: not _devices_of(s, pid), 3 * interval + 5)
    if _devices_of(gone, pid):
        problems.append(f"pid {pid} was killed and its series are still exported")
    elif Path(truth["file"]).exists():
        problems.append(f"pid {pid} was killed and its file {truth['file']} is still there")
    else:
        lines.append(
            f"killed pid {pid}: series gone and file removed in {time.monotonic() - started:.1f}s"
        )
    return lines, problems


def _devices_of(samples: Samples, pid: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, labels, value in samples:
        if name.startswith("torch_cuda_") and labels.get("pid") == pid:
            entry = out.setdefault(labels["uuid"], {"labels": labels})
            entry[name] = int(value) if value == int(value) else value
    return out


def _until(scrape, done: Callable[[Samples], bool], timeout: float) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape()
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value / 2**20:.0f} MiB" if value >= 2**20 else f"{value:g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, ["-" * w for w in widths], *rows]:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return out


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], float(sys.argv[2])))
