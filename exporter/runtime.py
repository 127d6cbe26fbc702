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
from exporter.samples import AnySample, Labels
from exporter.server import build_app
from exporter.sources import Source

if TYPE_CHECKING:
    from exporter.cli import ListenAddress
    from exporter.harness.api.server import ApiServer
    from exporter.harness.engine import Engine

log = logging.getLogger("exporter")


@dataclass
class Runtime:
    sampler: Sampler
    app: web.Application
    harness: Engine | None = None  # the inference harness, started and stopped with the runtime
    harness_api: ApiServer | None = None  # its HTTP API (and synthetic load), likewise


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


def harness_wanted(args: argparse.Namespace) -> bool:
    """--harness: yes (a missing PyTorch is then an error); --no-harness: no; neither: when
    PyTorch is installed, else no, said in one log line."""
    wanted = getattr(args, "harness", False)
    if wanted is not None:
        return bool(wanted)
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        log.warning(
            "the inference harness is off: PyTorch is not installed (%s); install it with "
            "pip install 'gpu-inference-exporter[harness]', or pass --no-harness to say so",
            exc.name or exc,
        )
        return False
    return True


def build_harness_api(args: argparse.Namespace, engine: Engine) -> ApiServer:
    """The harness's HTTP API on --harness.listen-address, with its limits and load."""
    from exporter.harness.api.admission import AdmissionLimits
    from exporter.harness.api.server import ApiServer, ApiSettings
    from exporter.harness.loadgen import LoadProfile

    limits = AdmissionLimits(
        max_prompt_tokens=args.harness_max_prompt_tokens,
        max_tokens=args.harness_max_tokens,
        shed_kv_utilization=args.harness_shed_kv_utilization,
        max_waiting=args.harness_max_waiting,
        request_timeout=args.harness_request_timeout,
    )
    load = None
    if args.harness_load > 0:
        load = LoadProfile(
            args.harness_load, args.harness_load_prompt_tokens, args.harness_load_max_tokens
        )
    address = args.harness_listen_address
    return ApiServer(engine, ApiSettings(address.host, address.port, limits, load))


def build_runtime(
    *,
    backend: str,
    args: argparse.Namespace,
    const_labels: Labels,
    static_samples: Sequence[AnySample] = (),
) -> Runtime:
    sources = build_sources(backend, args)
    harness = harness_api = None
    if harness_wanted(args):
        harness, harness_sources = build_harness(args)
        sources += harness_sources
        harness_api = build_harness_api(args, harness)
    gpu_backend = backend if backend != "none" else None
    sampler = Sampler(
        sources,
        interval=args.interval,
        timeout=args.timeout,
        const_labels=const_labels,
        static_samples=static_samples,
        gpu_backend=gpu_backend,
    )
    ready_checks = [harness.readiness] if harness is not None else []
    app = build_app(sampler, ready_checks=ready_checks)
    return Runtime(sampler=sampler, app=app, harness=harness, harness_api=harness_api)


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
        if runtime.harness_api is not None:
            await runtime.harness_api.start()
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
        if runtime.harness_api is not None:
            await runtime.harness_api.stop()
        await runner.cleanup()
        if runtime.harness is not None:
            await asyncio.to_thread(runtime.harness.stop)
        runtime.sampler.close()
