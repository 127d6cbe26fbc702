#!/usr/bin/env python3
"""Scrape latency of GET /metrics against the simulated 8-GPU fleet, next to its floor.

Each server runs in its own process on 127.0.0.1; one client in this process sends the
requests, round-robin across the servers (so machine noise hits every row alike), one at a
time, and prints p50/p99/mean per row:

  floor           a bare aiohttp handler returning the same bytes (nothing to beat)
  exporter text   gpu-inference-exporter, Prometheus text 0.0.4
  exporter om+gz  gpu-inference-exporter, OpenMetrics + gzip (what Prometheus asks for)
  exporter slow   the same with a source that takes --slow-ms per collection (a slow driver)
  on-scrape slow  the dcgm-exporter model: collect and render inside the request, same source

Usage: .venv/bin/python bench/scrape.py [--requests 2000] [--gpus 8] [--slow-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OM_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    import gzip

    from aiohttp import web

    from exporter.exposition import CONTENT_TYPE_TEXT, Format, make_snapshot

    snapshot = make_snapshot(_fleet(gpus).collect(), collected_at=0, collected_monotonic=0)
    body = snapshot.body(Format.TEXT)
    gz = gzip.compress(body, 6)

    async def metrics(request: web.Request) -> web.Response:
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(
                body=gz, headers={"Content-Type": CONTENT_TYPE_TEXT, "Content-Encoding": "gzip"}
            )
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_TEXT})

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per row")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the simulated fleet")
    parser.add_argument("--slow-ms", type=float, default=200, help="latency of the slow source")
    parser.add_argument("--on-scrape-requests", type=int, default=50, help="requests, slow rows")
    args = parser.parse_args()
    slow = args.slow_ms / 1000

    ctx = mp.get_context("spawn")
    servers, ports = [], {}
    plan = {
        "floor": (serve_floor, (args.gpus,)),
        "exporter": (serve_exporter, (args.gpus, 0.0)),
        "exporter-slow": (serve_exporter, (args.gpus, slow)),
        "on-scrape-slow": (serve_on_scrape, (args.gpus, slow)),
    }
    try:
        for name, (target, extra) in plan.items():
            ports[name] = _free_port()
            ready = ctx.Event()
            proc = ctx.Process(target=target, args=(ports[name], *extra, ready), daemon=True)
            proc.start()
            servers.append(proc)
            if not ready.wait(30):
                raise SystemExit(f"{name} server did not start")

        def url(name: str) -> str:
            return f"http://127.0.0.1:{ports[name]}/metrics"

        plain = {"Accept-Encoding": "identity"}
        prom = {"Accept": OM_ACCEPT, "Accept-Encoding": "gzip"}
        fast = {
            "floor, text": (url("floor"), plain),
            "exporter, text": (url("exporter"), plain),
            "floor, text+gzip": (url("floor"), {"Accept-Encoding": "gzip"}),
            "exporter, openmetrics+gzip": (url("exporter"), prom),
            f"exporter, om+gzip, {args.slow_ms:g} ms source": (url("exporter-slow"), prom),
        }
        slow_rows = {
            f"collect-on-scrape, {args.slow_ms:g} ms source": (url("on-scrape-slow"), prom),
        }
        lat, sizes = asyncio.run(measure(fast, args.requests))
        lat2, sizes2 = asyncio.run(measure(slow_rows, args.on_scrape_requests))
        lat.update(lat2)
        sizes.update(sizes2)
    finally:
        for proc in servers:
            proc.terminate()
            proc.join(5)

    cost = _cycle_cost(args.gpus)
    floor_p50 = statistics.median(lat["floor, text"])
    print(f"GET /metrics, simulated fleet of {args.gpus} GPUs, one client on 127.0.0.1")
    header = ("n", "bytes", "p50 ms", "p99 ms", "mean ms", "p50/floor")
    print(f"{'row':44} " + " ".join(f"{h:>9}" for h in header))
    for name, values in lat.items():
        values = sorted(values)
        p50 = statistics.median(values)
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        print(
            f"{name:44} {len(values):9d} {sizes[name]:9d} {p50 * 1e3:9.3f} {p99 * 1e3:9.3f} "
            f"{statistics.fmean(values) * 1e3:9.3f} {p50 / floor_p50:9.2f}"
        )
    print(
        "\none cycle's work in process, best of 20 (ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in cost.items())
    )
    return 0


def _cycle_cost(gpus: int) -> dict[str, float]:
    """Best-of-20 milliseconds of one simulated collect and of rendering each variant."""
    from exporter.exposition import Format, make_snapshot

    source = _fleet(gpus)
    steps = {"collect": 0.0, "text": 0.0, "text+gzip": 0.0, "openmetrics": 0.0, "om+gzip": 0.0}
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(20):
        start = time.perf_counter()
        samples = source.collect()
        steps["collect"] = time.perf_counter() - start
        for fmt, name in ((Format.TEXT, "text"), (Format.OPENMETRICS, "openmetrics")):
            snap = make_snapshot(samples, collected_at=0, collected_monotonic=0)
            start = time.perf_counter()
            snap.body(fmt)
            steps[name] = time.perf_counter() - start
            start = time.perf_counter()
            snap.body(fmt, gzipped=True)  # compressing the memoized plain body
            steps["text+gzip" if fmt is Format.TEXT else "om+gzip"] = time.perf_counter() - start
        best = {k: min(best[k], v) for k, v in steps.items()}
    return {k: v * 1e3 for k, v in best.items()}


if __name__ == "__main__":
    raise SystemExit(main())
