#!/usr/bin/env python3
"""Idle CPU of the exporter next to nvitop-exporter: % of one core while Prometheus scrapes.

Every exporter runs as its own process, all at once (machine noise hits every row alike),
collecting every --interval; a scraper thread here asks each one for OpenMetrics + gzip every
--scrape-every seconds, as Prometheus does, at staggered phases. After a warm-up (long enough
for two scrapes, so the exporter has learned the scrape period) the CPU time of each process
(utime + stime from /proc/PID/stat) over --window seconds gives its % of one core; RSS comes
from /proc/PID/status at the start and the end of the window. Three runs (fresh processes
each), median per row, and the ratio to nvitop-exporter's median in the same runs.

Rows: the simulated fleet and the NVML source on the fake NVML (tests/fake_nvml, an 8 x H100
board, one process per GPU), with no harness and with an idle one, and nvitop-exporter on the
same fake NVML. Readiness: this exporter's /readyz (never a /metrics poll, which would be a
scrape); nvitop-exporter's /metrics until it shows a GPU process (it keeps no state of that).

nvitop-exporter is not a dependency of this project: `.venv/bin/pip install nvitop-exporter`.

Usage: .venv/bin/python bench/idle_cpu.py [--runs 3] [--window 90] [--scrape-every 15]
       [--interval 1] [--gpus 8] [--rows simulated,nvml,harness,nvitop]
       [--compare-with CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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
    rss_bytes,
    stop,
    wait_until_ready,
)
from bench.report import ms, percentile, table  # noqa: E402
from tests.fake_nvml import build, subprocess_env  # noqa: E402

NVITOP = "nvitop-exporter"


@dataclass
class Row:
    name: str
    argv: list[str]  # without the listen address
    nvml: bool  # runs on the fake NVML
    cwd: Path = REPO  # the checkout it runs from
    cpu: list[float] = field(default_factory=list)  # % of one core, per run
    rss_start: list[float] = field(default_factory=list)  # MiB
    rss_end: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, every run


@dataclass
class Running:
    row: Row
    proc: subprocess.Popen
    url: str
    log: Path


ROW_KINDS = ("simulated", "nvml", "harness", "nvitop")


def rows(args: argparse.Namespace, nvitop: str | None) -> list[Row]:
    ours = [sys.executable, "-m", "exporter", "serve", f"--collect.interval={args.interval}"]
    ours += ["--log.level=warning"]
    sim = [*ours, "--backend=simulated", f"--simulate.gpus={args.gpus}", "--no-harness"]
    nvml = [*ours, "--backend=nvml"]
    kinds = args.rows.split(",")
    out = []
    if "simulated" in kinds:
        out.append(Row(f"simulated {args.gpus} GPUs, no harness", sim, nvml=False))
    if "nvml" in kinds:
        out.append(Row(f"NVML (fake) {args.gpus} GPUs, no harness", [*nvml, "--no-harness"], True))
    if "harness" in kinds:
        harness = [*nvml, "--harness", "--harness.preset=tiny"]
        out.append(Row(f"NVML (fake) {args.gpus} GPUs + idle harness", harness, nvml=True))
    for checkout in args.compare_with:  # the same rows from another checkout (e.g. main)
        other = Path(checkout).resolve()
        if "simulated" in kinds:
            out.append(Row(f"simulated {args.gpus} GPUs, {other.name}", sim, False, other))
        if "nvml" in kinds:
            out.append(
                Row(
                    f"NVML (fake) {args.gpus} GPUs, {other.name}",
                    [*nvml, "--no-harness"],
                    True,
                    other,
                )
            )
    if nvitop:
        out.append(Row(NVITOP, [nvitop, "--interval", str(args.interval)], nvml=True))
    return out


def start(row: Row, env: dict[str, str], work: Path) -> Running:
    port = free_port()
    argv = list(row.argv)
    if row.name == NVITOP:
        argv += ["--bind-address", "127.0.0.1", "--port", str(port)]
    else:
        argv.append(f"--web.listen-address=127.0.0.1:{port}")
        if "--harness" in argv:
            argv.append(f"--harness.listen-address=127.0.0.1:{free_port()}")
    log = work / f"{free_port()}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            argv, cwd=row.cwd, env=env if row.nvml else None, stdout=subprocess.DEVNULL, stderr=err
        )
    return Running(row, proc, f"http://127.0.0.1:{port}", log)


def ready(run: Running) -> None:
    try:
        if run.row.name == NVITOP:
            wait_until_ready(run.proc, run.url + "/metrics", NVITOP, b"process_gpu_memory_MiB{")
        else:
            wait_until_ready(run.proc, run.url + "/readyz", run.row.name)
    except SystemExit:
        print(run.log.read_text(errors="replace")[-2000:], file=sys.stderr)
        raise


class Scraper(threading.Thread):
    """Scrapes each target every `period` seconds at staggered phases, like Prometheus."""

    def __init__(self, targets: list[Running], period: float) -> None:
        super().__init__(daemon=True)
        self.targets, self.period = targets, period
        self.stopping = threading.Event()
        self.recording = False
        self.latencies: dict[str, list[float]] = {t.row.name: [] for t in targets}

    def run(self) -> None:
        t0 = time.monotonic()
        due = [t0 + i * self.period / len(self.targets) for i in range(len(self.targets))]
        while not self.stopping.is_set():
            i = min(range(len(due)), key=due.__getitem__)
            if self.stopping.wait(max(0.0, due[i] - time.monotonic())):
                return
            target = self.targets[i]
            started = time.perf_counter()
            get(target.url + "/metrics", PROM_HEADERS)
            if self.recording:
                self.latencies[target.row.name].append(time.perf_counter() - started)
            due[i] += self.period


def one_run(table_rows: list[Row], env: dict[str, str], work: Path, args) -> None:
    running: list[Running] = []
    scraper = None
    try:
        for row in table_rows:
            running.append(start(row, env, work))
        for run in running:
            ready(run)
        scraper = Scraper(running, args.scrape_every)
        scraper.start()
        time.sleep(args.warmup)
        scraper.recording = True
        cpu0 = {r.row.name: cpu_seconds(r.proc.pid) for r in running}
        rss0 = {r.row.name: rss_bytes(r.proc.pid) for r in running}
        t0 = time.monotonic()
        time.sleep(args.window)
        cpu1 = {r.row.name: cpu_seconds(r.proc.pid) for r in running}
        elapsed = time.monotonic() - t0
        scraper.recording = False
        for run in running:
            name = run.row.name
            run.row.cpu.append(100 * (cpu1[name] - cpu0[name]) / elapsed)
            run.row.rss_start.append(rss0[name] / 2**20)
            run.row.rss_end.append(rss_bytes(run.proc.pid) / 2**20)
            run.row.latencies += scraper.latencies[name]
    finally:
        if scraper is not None:
            scraper.stopping.set()
            scraper.join(15)
        for run in running:
            stop(run.proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=90.0, help="measured seconds per run")
    parser.add_argument("--scrape-every", type=float, default=15.0, help="scrape interval, s")
    parser.add_argument("--warmup", type=float, default=None, help="default: 2 scrapes + 5 s")
    parser.add_argument("--interval", type=float, default=1.0, help="collection interval, s")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument(
        "--rows", default=",".join(ROW_KINDS), help=f"which rows, of {','.join(ROW_KINDS)}"
    )
    parser.add_argument(
        "--compare-with",
        metavar="CHECKOUT",
        action="append",
        default=[],
        help="also run the simulated and NVML rows from this checkout (repeatable)",
    )
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = 2 * args.scrape_every + 5

    nvitop = None
    if "nvitop" in args.rows.split(","):
        nvitop = shutil.which(NVITOP, path=str(Path(sys.executable).parent))
        if nvitop is None:
            print(f"{NVITOP} is not installed: .venv/bin/pip install nvitop-exporter")
            return 2
    work = Path(tempfile.mkdtemp(prefix="idle-cpu-"))
    try:
        library = build(work)
        config = work / "fake.cfg"
        config.write_text(f"gpus {args.gpus}\ngpu * process {os.getpid()} python3 4294967296\n")
        env = {**os.environ, **subprocess_env(library, config)}
        table_rows = rows(args, nvitop)
        for n in range(args.runs):
            one_run(table_rows, env, work, args)
            print(
                f"run {n + 1}: " + ", ".join(f"{r.name} {r.cpu[-1]:.2f}%" for r in table_rows),
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(table_rows, args)
    return 0


def report(table_rows: list[Row], args: argparse.Namespace) -> None:
    ref = statistics.median(table_rows[-1].cpu) if table_rows[-1].name == NVITOP else None
    out = []
    for row in table_rows:
        median = statistics.median(row.cpu)
        ratio = "-" if ref is None else f"{ref / median:.1f}" if median else "inf"
        out.append(
            [
                row.name,
                *(f"{c:.2f}" for c in row.cpu),
                f"{median:.2f}",
                ratio,
                f"{statistics.median(row.rss_start):.0f} → {statistics.median(row.rss_end):.0f}",
                ms(percentile(row.latencies, 50)),
                ms(max(row.latencies, default=float("nan"))),
            ]
        )
    runs = [f"run {i + 1} %" for i in range(args.runs)]
    table(
        f"Idle CPU, % of one core: collection every {args.interval:g} s, OpenMetrics + gzip "
        f"scrape every {args.scrape_every:g} s, {args.window:g} s window, {args.runs} runs",
        ["exporter", *runs, "median %", f"x below {NVITOP}", "RSS MiB", "scrape p50 ms", "max ms"],
        out,
        note=f"(x below: {NVITOP}'s median over the row's; RSS: median at window start → end)",
    )


if __name__ == "__main__":
    raise SystemExit(main())
