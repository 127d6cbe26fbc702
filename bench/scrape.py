#!/usr/bin/env python3
"""Scrape latency of GET /metrics against simulated fleets (8 and 64 GPUs), next to its floor.

Each server runs in its own process on 127.0.0.1; one client in this process sends the
requests, round-robin across the servers (so machine noise hits every row alike), one at a
time, and prints p50/p99/max/mean per row:

  floor           a bare aiohttp handler returning the same bytes (nothing to beat)
  exporter        gpu-inference-exporter, text 0.0.4 or OpenMetrics + gzip (what Prometheus asks)
  ..., in cycles  the same, but requests sent only in the first --cycle-window-ms after each
                  collection starts (read from exporter_last_collect_timestamp_seconds), while
                  the sampler collects and renders: what a scrape that lands on a cycle costs
  exporter slow   a source that takes --slow-ms per collection (a slow driver), 8 GPUs
  on-scrape slow  the dcgm-exporter model: collect and render inside the request, same source

A client asking back to back is a scraper the exporter renders ahead for every snapshot.

Usage: .venv/bin/python bench/scrape.py [--requests 2000] [--gpus 8,64] [--cycles 30]
       [--cycle-window-ms 50] [--slow-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import PROM_HEADERS, free_port
from bench.report import percentile, table

PLAIN = {"Accept-Encoding": "identity"}


class SlowSource:
    """Wraps a source and sleeps before answering, like a driver call that takes its time."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay, self.name = inner, delay, inner.name

    def collect(self):
        time.sleep(self.delay)
        return self.inner.collect()

    def close(self) -> None:
        self.inner.close()


def _fleet(gpus: int):
    from exporter.sources.simulated import SimulatedSource

    return SimulatedSource(gpus=gpus)


def serve_exporter(port: int, gpus: int, slow: float, ready) -> None:
    from aiohttp import web

    from exporter.sampler import Sampler
    from exporter.server import build_app

    source = _fleet(gpus)
    if slow:
        source = SlowSource(source, slow)
    sampler = Sampler([source], interval=1.0, timeout=max(1.0, 2 * slow), gpu_backend="simulated")
    app = build_app(sampler)

    async def start(app):
        app["collector"] = asyncio.create_task(sampler.run())
        while sampler.snapshot is None:
            await asyncio.sleep(0.01)
        ready.set()

    app.on_startup.append(start)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_floor(port: int, gpus: int, ready) -> None:
    """The same bytes as the exporter's, from a bare handler: the least a scrape can cost."""
    from aiohttp import web

    from exporter.exposition import CONTENT_TYPES, Format, make_snapshot

    snapshot = make_snapshot(_fleet(gpus).collect(), collected_at=0, collected_monotonic=0)
    text = snapshot.body(Format.TEXT)
    om_gz = snapshot.body(Format.OPENMETRICS, gzipped=True)
    om_headers = {"Content-Type": CONTENT_TYPES[Format.OPENMETRICS], "Content-Encoding": "gzip"}

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=om_gz, headers=om_headers)
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPES[Format.TEXT]})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(lambda app: _set(ready))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_on_scrape(port: int, gpus: int, slow: float, ready) -> None:
    """Collect and render inside the request handler, as exporters that read on scrape do."""

    from aiohttp import web

    from exporter.exposition import CONTENT_TYPES, Format, make_snapshot

    source = SlowSource(_fleet(gpus), slow)

    async def metrics(request: web.Request) -> web.Response:
        samples = await asyncio.to_thread(source.collect)
        snap = make_snapshot(samples, collected_at=time.time(), collected_monotonic=0)
        return web.Response(
            body=snap.body(Format.OPENMETRICS, gzipped=True),
            headers={
                "Content-Type": CONTENT_TYPES[Format.OPENMETRICS],
                "Content-Encoding": "gzip",
            },
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.on_startup.append(lambda app: _set(ready))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _set(event) -> None:
    event.set()


async def measure(targets: dict[str, tuple[str, dict[str, str]]], rounds: int):
    """Round-robin back-to-back requests: latencies per target, and the size on the wire."""
    import aiohttp

    latencies: dict[str, list[float]] = {name: [] for name in targets}
    sizes: dict[str, int] = {}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for name, (url, headers) in targets.items():  # warm-up, and the size on the wire
            async with session.get(url, headers=headers) as resp:
                resp.raise_for_status()
                sizes[name] = len(await resp.read())
        for _ in range(rounds):
            for name, (url, headers) in targets.items():
                start = time.perf_counter()
                async with session.get(url, headers=headers) as resp:
                    await resp.read()
                latencies[name].append(time.perf_counter() - start)
    return latencies, sizes


async def measure_in_cycles(
    targets: dict[str, tuple[str, dict[str, str]]], cycles: int, window: float
) -> dict[str, list[float]]:
    """Back-to-back requests only in the first `window` s after each collection starts.

    The sampler starts a cycle every second on a fixed grid; the start of the current one is
    its exporter_last_collect_timestamp_seconds (Unix time, this machine's clock)."""
    import aiohttp

    latencies: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        grid = {}
        for name, (url, _) in targets.items():
            async with session.get(url, headers=PLAIN) as resp:
                text = (await resp.read()).decode()
            line = next(
                x for x in text.splitlines() if x.startswith("exporter_last_collect_timestamp")
            )
            grid[name] = float(line.split()[-1]) % 1.0
        for _ in range(cycles):
            for name, (url, headers) in targets.items():
                now = time.time()
                start_at = now - now % 1.0 + grid[name]
                if start_at < now + 0.02:
                    start_at += 1.0
                await asyncio.sleep(start_at - time.time())
                while time.time() < start_at + window:
                    start = time.perf_counter()
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()
                    latencies[name].append(time.perf_counter() - start)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per row")
    parser.add_argument("--gpus", default="8,64", help="fleet sizes, comma-separated")
    parser.add_argument("--cycles", type=int, default=30, help="cycles sampled per in-cycle row")
    parser.add_argument("--cycle-window-ms", type=float, default=50, help="see the rows above")
    parser.add_argument("--slow-ms", type=float, default=200, help="latency of the slow source")
    parser.add_argument("--on-scrape-requests", type=int, default=50, help="requests, slow rows")
    args = parser.parse_args()
    slow = args.slow_ms / 1000
    fleets = [int(g) for g in args.gpus.split(",")]

    ctx = mp.get_context("spawn")
    servers, ports = [], {}
    plan: dict[str, tuple] = {}
    for gpus in fleets:
        plan[f"floor {gpus}"] = (serve_floor, (gpus,))
        plan[f"exporter {gpus}"] = (serve_exporter, (gpus, 0.0))
    plan["exporter-slow"] = (serve_exporter, (fleets[0], slow))
    plan["on-scrape-slow"] = (serve_on_scrape, (fleets[0], slow))
    try:
        for name, (target, extra) in plan.items():
            ports[name] = free_port()
            ready = ctx.Event()
            proc = ctx.Process(target=target, args=(ports[name], *extra, ready), daemon=True)
            proc.start()
            servers.append(proc)
            if not ready.wait(60):
                raise SystemExit(f"{name} server did not start")

        def url(name: str) -> str:
            return f"http://127.0.0.1:{ports[name]}/metrics"

        fast: dict[str, tuple[str, dict[str, str]]] = {}
        in_cycles: dict[str, tuple[str, dict[str, str]]] = {}
        floors: dict[str, str] = {}
        for gpus in fleets:
            for variant, headers in (("text", PLAIN), ("om+gzip", PROM_HEADERS)):
                floor_row = f"{gpus} GPUs, floor, {variant}"
                fast[floor_row] = (url(f"floor {gpus}"), headers)
                fast[f"{gpus} GPUs, exporter, {variant}"] = (url(f"exporter {gpus}"), headers)
                floors[f"{gpus} GPUs, exporter, {variant}"] = floor_row
            row = f"{gpus} GPUs, exporter, om+gzip, in cycles"
            in_cycles[row] = (url(f"exporter {gpus}"), PROM_HEADERS)
            floors[row] = f"{gpus} GPUs, floor, om+gzip"
        row = f"{fleets[0]} GPUs, exporter, om+gzip, {args.slow_ms:g} ms source"
        fast[row] = (url("exporter-slow"), PROM_HEADERS)
        floors[row] = f"{fleets[0]} GPUs, floor, om+gzip"
        slow_rows = {
            f"{fleets[0]} GPUs, collect-on-scrape, {args.slow_ms:g} ms source": (
                url("on-scrape-slow"),
                PROM_HEADERS,
            ),
        }
        floors.update(dict.fromkeys(slow_rows, f"{fleets[0]} GPUs, floor, om+gzip"))
        lat, sizes = asyncio.run(measure(fast, args.requests))
        lat2, sizes2 = asyncio.run(measure(slow_rows, args.on_scrape_requests))
        lat3 = asyncio.run(measure_in_cycles(in_cycles, args.cycles, args.cycle_window_ms / 1e3))
        lat.update(lat2)
        lat.update(lat3)
        sizes.update(sizes2)
        sizes.update({row: sizes[row.removesuffix(", in cycles")] for row in lat3})
    finally:
        for proc in servers:
            proc.terminate()
            proc.join(5)

    rows = []
    for name, values in lat.items():
        p50 = statistics.median(values)
        floor_p50 = statistics.median(lat[floors.get(name, name)])
        rows.append(
            [
                name,
                str(len(values)),
                str(sizes[name]),
                f"{p50 * 1e3:.3f}",
                f"{percentile(values, 99) * 1e3:.3f}",
                f"{max(values) * 1e3:.3f}",
                f"{statistics.fmean(values) * 1e3:.3f}",
                f"{p50 / floor_p50:.2f}",
            ]
        )
    table(
        "GET /metrics, simulated fleets, one client on 127.0.0.1 (ms)",
        ["row", "n", "bytes", "p50", "p99", "max", "mean", "p50/floor"],
        rows,
        note=f"(in cycles: requests in the first {args.cycle_window_ms:g} ms after each of "
        f"{args.cycles} collection starts; p50/floor: against the floor row of the same variant)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
