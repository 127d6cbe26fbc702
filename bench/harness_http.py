#!/usr/bin/env python3
"""The harness's HTTP API under load: a sweep of Poisson request rates up to past saturation.

Starts `gpu-inference-exporter serve` with the harness (a real process, its API on a free
127.0.0.1 port), measures the capacity of the request mix with a closed loop, then offers each
rate (a share of that capacity) for --seconds with the synthetic load generator and prints, per
rate: goodput (completed requests and tokens per second), client-side TTFT and TPOT p50/p99
of the completed requests, and how many requests were shed (503), rejected (413/400) and timed
out (504), checked against the server's inference_requests_total.

The mix: prompts lognormal around 96 tokens (a few percent past the 512-token budget, rejected
at the edge), 16-128 new tokens; serve's default guard rails (queue of 32, 5 s deadline, shed
at 90% KV). The client runs on the same machine: on a small one it competes with the server.

Past saturation, the bounded queue sheds the overflow at once (503); a second server with a
long queue (--long-queue, 1000) runs the saturating rates for comparison: there the overflow
waits, and dies at its deadline (504) after holding a client for up to 5 s.

Usage: .venv/bin/python bench/harness_http.py [--shares 0.25,0.5,0.75,1,1.5,2.5] [--seconds 12]
       [--long-queue 1000] [-- serve flags, e.g. --harness.device cuda --harness.preset small]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import ms, percentile, table  # noqa: E402
from exporter.harness.loadgen import (  # noqa: E402
    LoadGenerator,
    LoadProfile,
    LoadStats,
    RequestResult,
    parse_length_distribution,
    prompt_text,
)

PROMPTS = "lognormal:96,0.9"
OUTPUTS = "uniform:16,128"
MAX_PROMPT_TOKENS = 512
SERVER_OUTCOMES = ("ok", "rejected", "shed", "timeout", "error", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server ----------------------------------------------------------------------------------


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str, str]:
    metrics_port, api_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "exporter", "serve", "--backend=none", "--harness"]
    cmd += [f"--web.listen-address=127.0.0.1:{metrics_port}", "--collect.interval=0.5"]
    cmd += [f"--harness.listen-address=127.0.0.1:{api_port}", "--log.level=warning", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics_url, api_url = f"http://127.0.0.1:{metrics_port}", f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited {proc.returncode}: {proc.stdout.read().decode()}")
        try:
            with urllib.request.urlopen(metrics_url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return proc, metrics_url, api_url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("serve was not ready within 120 s")
        time.sleep(0.2)


def server_figures(metrics_url: str) -> dict[str, float]:
    """inference_requests_total by outcome, and the running and waiting gauges."""
    with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "inference_requests_total":
                out[s.labels["outcome"]] = s.value
            elif s.name in ("inference_requests_running", "inference_requests_waiting"):
                out[s.name] = s.value
    return out


async def until_idle(metrics_url: str) -> None:
    """Wait until the server has nothing running or queued (the sampler's view, 0.5 s old)."""
    await asyncio.sleep(1.0)
    for _ in range(120):
        f = await asyncio.to_thread(server_figures, metrics_url)
        if f.get("inference_requests_running") == 0 and f.get("inference_requests_waiting") == 0:
            return
        await asyncio.sleep(0.5)


# --- the client ----------------------------------------------------------------------------------


async def capacity(api_url: str, in_flight: int, requests: int) -> float:
    """Completed requests/s of the mix (prompts within the budget) with `in_flight` requests
    always outstanding."""
    rng = random.Random(99)
    prompts, outputs = parse_length_distribution(PROMPTS), parse_length_distribution(OUTPUTS)
    work = []
    while len(work) < requests:
        n = prompts.sample(rng)
        if n <= MAX_PROMPT_TOKENS:
            work.append((prompt_text(rng, n), n, outputs.sample(rng)))
    generator = LoadGenerator(api_url, LoadProfile(1.0))
    gate = asyncio.Semaphore(in_flight)
    stats = LoadStats()

    async def one(session: aiohttp.ClientSession, text: str, n: int, new: int) -> None:
        async with gate:
            result = RequestResult("failed", 0, time.perf_counter(), n, new)
            await generator.send(session, text, new, result)
            stats.add(result)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session, *w) for w in work))
        elapsed = time.perf_counter() - started
    return stats.outcomes["ok"] / elapsed


async def rates(
    api_url: str, metrics_url: str, capacity_rps: float, shares: list[float], seconds: float
) -> tuple[list[list[str]], bool]:
    """Offer each share of capacity in turn; one table row per rate, and whether the client's
    counts matched the server's counters at every rate."""
    rows = []
    agree = True
    for i, share in enumerate(shares):
        rate = share * capacity_rps
        profile = LoadProfile(
            rate,
            parse_length_distribution(PROMPTS),
            parse_length_distribution(OUTPUTS),
            seed=i,
        )
        before = await asyncio.to_thread(server_figures, metrics_url)
        generator = LoadGenerator(api_url, profile, keep_results=True)
        started = time.perf_counter()
        stats = await generator.run(duration=seconds)
        wall = time.perf_counter() - started
        await until_idle(metrics_url)
        after = await asyncio.to_thread(server_figures, metrics_url)
        server = {o: int(after.get(o, 0) - before.get(o, 0)) for o in SERVER_OUTCOMES}
        client = stats.outcomes
        agree &= all(server[o] == client[o] for o in SERVER_OUTCOMES) and not client["failed"]
        done = [r for r in stats.results if r.outcome == "ok"]
        ttft = [r.ttft for r in done if r.ttft is not None]
        tpot = [g for r in done for g in r.token_gaps]
        tokens = sum(len(r.token_times) for r in done)
        rows.append(
            [
                f"{rate:.1f} ({share:.0%})",
                str(stats.sent),
                f"{len(done) / wall:.1f}",
                f"{tokens / wall:,.0f}",
                ms(percentile(ttft, 50)),
                ms(percentile(ttft, 99)),
                ms(percentile(tpot, 50)),
                ms(percentile(tpot, 99)),
                str(client["shed"]),
                str(client["rejected"]),
                str(client["timeout"]),
            ]
        )
    return rows, agree


HEADER = [
    "queue",
    "offered req/s (of capacity)",
    "sent",
    "ok req/s",
    "tokens/s",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "TPOT p50 ms",
    "TPOT p99 ms",
    "shed 503",
    "rejected 413",
    "timeout 504",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shares", default="0.25,0.5,0.75,1,1.5,2.5", help="of capacity")
    parser.add_argument("--seconds", type=float, default=12.0, help="arrivals per rate")
    parser.add_argument("--capacity-requests", type=int, default=160)
    parser.add_argument(
        "--long-queue",
        type=int,
        default=1000,
        help="max waiting of the second server, run at the saturating shares (0: skip it)",
    )
    parser.add_argument("serve_args", nargs="*", help="extra serve flags (after --)")
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    started = time.perf_counter()
    print(f"harness HTTP benchmark: serve {' '.join(args.serve_args) or '(defaults)'}")
    print(f"   {os.cpu_count()} CPUs on this machine; the client shares them with the server")
    rows: list[list[str]] = []
    agree = True
    proc, metrics_url, api_url = start_server(args.serve_args)
    try:
        with urllib.request.urlopen(api_url + "/v1/models", timeout=5) as response:
            print(f"   /v1/models: {response.read().decode().strip()}")
        capacity_rps = asyncio.run(capacity(api_url, 32, args.capacity_requests))
        asyncio.run(until_idle(metrics_url))
        got, ok = asyncio.run(rates(api_url, metrics_url, capacity_rps, shares, args.seconds))
        rows += [["32", *row] for row in got]
        agree &= ok
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    saturating = [s for s in shares if s > 1]
    if args.long_queue and saturating:
        extra = [*args.serve_args, f"--harness.max-waiting={args.long_queue}"]
        proc, metrics_url, api_url = start_server(extra)
        try:
            got, ok = asyncio.run(
                rates(api_url, metrics_url, capacity_rps, saturating, args.seconds)
            )
            rows += [[str(args.long_queue), *row] for row in got]
            agree &= ok
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    table(
        f"Load sweep through the HTTP API: {args.seconds:g} s of Poisson arrivals per rate, "
        f"prompts {PROMPTS}, outputs {OUTPUTS} tokens, deadline 5 s",
        HEADER,
        rows,
        f"   (queue: --harness.max-waiting, 32 by default. Capacity: {capacity_rps:.1f} req/s "
        "of this mix, measured first through the API with 32 in flight. TTFT and TPOT as the "
        "client saw them, over completed requests; tokens/s counts completed requests' tokens.)"
        "\n   client counts == server's inference_requests_total at every rate: "
        f"{'yes' if agree else 'NO'}",
    )
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
