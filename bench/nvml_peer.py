#!/usr/bin/env python3
"""This exporter's NVML source next to nvitop-exporter, both on the same fake NVML, in one run.

The fake NVML (tests/fake_nvml, built here with gcc) plays an HGX board: 8 × H100 with 18 NVLink
links each and one compute process per GPU (this benchmark's own pid, so nvitop's psutil
look-ups find a real process); nvmlDeviceGetPcieThroughput blocks 20 ms as in the driver.
Every exporter runs as its own process with LD_LIBRARY_PATH pointing at the fake, so each
loads it as libnvidia-ml.so.1 exactly as it would load the driver's library.

Two phases, the exporters side by side in both:
1. idle, no scrapes, for --window seconds: CPU seconds (utime + stime from /proc) of each
   exporter process per collection cycle (both collect every --interval);
2. --requests scrapes per exporter, round-robin (machine noise hits every row alike), one at a
   time, with Prometheus's Accept header and gzip: p50/p99 latency.

nvitop-exporter is not a dependency of this project: `.venv/bin/pip install nvitop-exporter`.

Usage: .venv/bin/python bench/nvml_peer.py [--window 20] [--requests 300] [--interval 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.procs import (  # noqa: E402
    PROM_HEADERS,
    cpu_seconds,
    free_port,
    get,
    stop,
    wait_until_ready,
)
from tests.fake_nvml import build, subprocess_env  # noqa: E402


@dataclass
class Peer:
    name: str
    cmd: list[str]
    ready_path: str  # this exporter: /readyz (a /metrics poll is a scrape it learns from)
    ready_marker: bytes | None = None  # nvitop-exporter: a series its first collection shows
    port: int = 0
    proc: subprocess.Popen | None = None
    latencies: list[float] = field(default_factory=list)
    series: int = 0
    wire_bytes: int = 0
    cpu_per_cycle: float = 0.0
    cycles: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


def start(peer: Peer, env: dict[str, str]) -> None:
    peer.proc = subprocess.Popen(
        peer.cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{peer.port}{peer.ready_path}"
    wait_until_ready(peer.proc, url, peer.name, peer.ready_marker, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=20.0, help="idle CPU window, seconds")
    parser.add_argument("--requests", type=int, default=300, help="scrapes per exporter")
    parser.add_argument("--interval", type=float, default=1.0, help="collection interval, s")
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()

    nvitop = shutil.which("nvitop-exporter", path=str(Path(sys.executable).parent))
    if nvitop is None:
        print("nvitop-exporter is not installed: .venv/bin/pip install nvitop-exporter")
        return 2
    work = Path(tempfile.mkdtemp(prefix="nvml-peer-"))
    library = build(work)
    config = work / "fake.cfg"
    config.write_text(f"gpus {args.gpus}\ngpu * process {os.getpid()} python3 4294967296\n")
    env = {**os.environ, **subprocess_env(library, config)}

    ours = [sys.executable, "-m", "exporter", "serve", "--backend=nvml"]
    ours += [f"--collect.interval={args.interval}", "--log.level=warning", "--no-harness"]
    peers = [
        Peer("gpu-inference-exporter", ours, "/readyz"),
        Peer(
            "gpu-inference-exporter --collect.processes", [*ours, "--collect.processes"], "/readyz"
        ),
        Peer("nvitop-exporter", [nvitop], "/metrics", b"process_gpu_memory_MiB{"),
    ]
    try:
        for peer in peers:
            peer.port = free_port()
            if peer.name == "nvitop-exporter":
                peer.cmd += ["--bind-address", "127.0.0.1", "--port", str(peer.port)]
                peer.cmd += ["--interval", str(args.interval)]
            else:
                peer.cmd.append(f"--web.listen-address=127.0.0.1:{peer.port}")
            start(peer, env)
        time.sleep(2 * args.interval)  # past the first cycles (probe, nvitop's first samples)

        # Phase 1: idle CPU per collection cycle (no request of any kind meanwhile).
        cpu0 = {p.name: cpu_seconds(p.proc.pid) for p in peers}
        t0 = time.monotonic()
        time.sleep(args.window)
        cpu1 = {p.name: cpu_seconds(p.proc.pid) for p in peers}
        elapsed = time.monotonic() - t0
        for peer in peers:  # each collects once per interval while a cycle is shorter than it
            peer.cycles = elapsed / args.interval
            peer.cpu_per_cycle = (cpu1[peer.name] - cpu0[peer.name]) / peer.cycles

        # Phase 2: scrape latency, round-robin.
        for peer in peers:
            body = get(peer.url, {"Accept": "text/plain"})
            peer.series = sum(1 for line in body.splitlines() if line and line[:1] != b"#")
            peer.wire_bytes = len(get(peer.url, PROM_HEADERS))
        for _ in range(args.requests):
            for peer in peers:
                started = time.perf_counter()
                get(peer.url, PROM_HEADERS)
                peer.latencies.append(time.perf_counter() - started)
    finally:
        for peer in peers:
            stop(peer.proc)
        shutil.rmtree(work, ignore_errors=True)

    report(peers, args)
    return 0


def report(peers: list[Peer], args: argparse.Namespace) -> None:
    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    ref = peers[-1]  # nvitop-exporter
    print(
        f"fake NVML: {args.gpus} x H100 80GB HBM3, 18 NVLink links, 1 process per GPU; "
        f"nvmlDeviceGetPcieThroughput blocks 20 ms; interval {args.interval:g} s; "
        f"idle window {args.window:g} s; {args.requests} scrapes each (OpenMetrics/text + gzip)"
    )
    cols = ("series", "bytes", "p50 ms", "p99 ms", "CPU ms/cycle", "p50 x", "p99 x", "CPU x")
    print(f"{'exporter':44}" + "".join(f"{c:>13}" for c in cols))
    for peer in peers:
        p50, p99 = statistics.median(peer.latencies), p(peer.latencies, 0.99)
        r50 = statistics.median(ref.latencies) / p50
        r99 = p(ref.latencies, 0.99) / p99
        rcpu = ref.cpu_per_cycle / peer.cpu_per_cycle if peer.cpu_per_cycle else float("inf")
        print(
            f"{peer.name:44}{peer.series:13d}{peer.wire_bytes:13d}{p50 * 1e3:13.2f}"
            f"{p99 * 1e3:13.2f}{peer.cpu_per_cycle * 1e3:13.2f}{r50:13.1f}{r99:13.1f}{rcpu:13.1f}"
        )
    print("(x columns: nvitop-exporter's figure over the row's; > 1 means the row is cheaper)")


if __name__ == "__main__":
    raise SystemExit(main())
