"""Wiring: sources → sampler → web app, started and stopped together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.sampler import Sampler
from exporter.samples import Labels
from exporter.server import build_app
from exporter.sources import Source

if TYPE_CHECKING:
    from exporter.cli import ListenAddress
    from exporter.harness.engine import Engine

log = logging.getLogger("exporter")


@dataclass
class Runtime:
    sampler: Sampler
    app: web.Application
    harness: Engine | None = None  # the inference harness, started and stopped with the runtime


def build_sources(backend: str, args: argparse.Namespace) -> list[Source]:
    """The sources for a resolved backend (`simulated`, `nvml`, `dcgm` or `none`)."""
    if backend == "simulated":
        from exporter.sources.simulated import SimulatedSource

        return [
            SimulatedSource(
                gpus=args.simulate_gpus,
                model=args.simulate_model,
                seed=args.simulate_seed,
                scenarios=args.scenarios,
                processes=getattr(args, "collect_processes", False),
            )
        ]
    if backend == "nvml":
        from exporter.sources.nvml import NvmlSource

        return [NvmlSource(collect_processes=getattr(args, "collect_processes", False))]
    if backend == "dcgm":
        from exporter.sources.dcgm import DcgmSource

        return [
            DcgmSource(
                address=args.dcgm_address,
                embedded=getattr(args, "dcgm_embedded", False),
                interval=args.interval,
            )
        ]
    if backend == "none":
        return []
    raise ValueError(f"no source for backend {backend!r}")


def build_harness(args: argparse.Namespace) -> tuple[Engine, list[Source]]:
    """The inference harness (not started) and its sources: its own figures and this process's
    PyTorch allocator. ValueError, said in one line, when it cannot run here."""
    from pathlib import Path

    if args.harness_weights and not Path(args.harness_weights).is_file():
        raise ValueError(f"--harness.weights: {args.harness_weights} is not a file")
    try:
        from exporter.harness.engine import Engine
    except ImportError as exc:
        raise ValueError(
            f"--harness needs PyTorch ({exc.name or exc} is not installed): "
            "pip install 'gpu-inference-exporter[harness]'"
        ) from None
    from exporter.harness.config import EngineConfig
    from exporter.sources.harness import HarnessSource
    from exporter.sources.torch import TorchAllocatorSource

    engine = Engine(
        EngineConfig(
            preset=args.harness_preset,
            weights=args.harness_weights,
            block_size=args.harness_block_size,
            kv_cache_memory=args.harness_kv_cache_memory,
            device=args.harness_device,
            dtype=args.harness_dtype,
        )
    )
    return engine, [HarnessSource(engine.metrics), TorchAllocatorSource()]


def build_runtime(*, backend: str, args: argparse.Namespace, const_labels: Labels) -> Runtime:
    sources = build_sources(backend, args)
    harness = None
    if getattr(args, "harness", False):
        harness, harness_sources = build_harness(args)
        sources += harness_sources
    gpu_backend = backend if backend != "none" else None
    sampler = Sampler(
        sources,
        interval=args.interval,
        timeout=args.timeout,
        const_labels=const_labels,
        gpu_backend=gpu_backend,
    )
    return Runtime(sampler=sampler, app=build_app(sampler), harness=harness)


async def run_until_signalled(
    runtime: Runtime, address: ListenAddress, signals: Sequence[signal.Signals]
) -> int:
    """Serve and collect until one of `signals` arrives; then stop cleanly and return 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(runtime.app, access_log=None, handle_signals=False)
    await runner.setup()
    if runtime.harness is not None:
        runtime.harness.start()  # loads and warms up on its own thread; scrapes go on meanwhile
    try:
        site = web.TCPSite(runner, address.host, address.port)
        await site.start()
        log.info(
            "listening on http://%s/metrics (sources: %s, interval %gs)",
            address,
            ", ".join(runtime.sampler.source_names) or "none",
            runtime.sampler.interval,
        )
        collecting = asyncio.create_task(runtime.sampler.run(), name="sampler")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({collecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if collecting in done:
            collecting.result()  # the sampler never returns: re-raise what killed it
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
        log.info("stopping")
        return 0
    finally:
        await runner.cleanup()
        if runtime.harness is not None:
            await asyncio.to_thread(runtime.harness.stop)
        runtime.sampler.close()
