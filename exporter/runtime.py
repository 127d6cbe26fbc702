"""Wiring: sources → sampler → web app, started and stopped together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.listener import Listener, ListenerLimits
from exporter.sampler import Sampler
from exporter.samples import AnySample, Labels
from exporter.server import TELEMETRY_PATH_KEY, build_app
from exporter.sources import Source
from exporter.web.security import WebSecurity

if TYPE_CHECKING:
    from exporter.cli import ListenAddress
    from exporter.harness.api.server import ApiServer
    from exporter.harness.build import BuildPlan
    from exporter.harness.engine import Engine

log = logging.getLogger("exporter")


class Shutdown:
    """The signals that stop the exporter: the first drains (/readyz fails at once, requests
    in flight get the drain timeout), a second one exits at once."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.signal: signal.Signals | None = None
        self.drain_timeout = ListenerLimits().drain_timeout

    def handle(self, sig: signal.Signals) -> None:
        if self.signal is None:
            self.signal = sig
            log.info(
                "%s: stopping; requests in flight get up to %gs (a second signal exits at once)",
                sig.name,
                self.drain_timeout,
            )
            self.requested.set()
            return
        log.warning("%s again: exiting now without draining", sig.name)
        logging.shutdown()
        os._exit(128 + sig.value)

    def readiness(self) -> tuple[bool, list[str]]:
        """A /readyz check: not ready from the first signal on."""
        if self.signal is None:
            return True, []
        return False, [f"shutting down ({self.signal.name} received)"]


@dataclass
class Runtime:
    sampler: Sampler
    app: web.Application
    harness: Engine | None = None  # the inference harness, started and stopped with the runtime
    harness_api: ApiServer | None = None  # its HTTP API (and synthetic load), likewise
    shutdown: Shutdown = field(default_factory=Shutdown)
    security: WebSecurity | None = None  # --web.config.file of the metrics listener


def build_sources(backend: str, args: argparse.Namespace) -> list[Source]:
    """The sources for a resolved backend (`simulated`, `nvml`, `dcgm` or `none`), and the
    serving processes' allocator probes with --torch.probe-dir."""
    sources = _gpu_sources(backend, args)
    directory = getattr(args, "torch_probe_dir", None)
    if directory:
        from exporter.sources.torch import GpuLookup
        from exporter.sources.torch_probe import ProbeDirectorySource

        gpus = GpuLookup()  # NVML's index and UUID
        simulated = [s for s in sources if hasattr(s, "uuids")]
        if simulated:  # the simulated fleet's GPUs stand for the node's
            uuids = simulated[0].uuids  # type: ignore[attr-defined]
            gpus = GpuLookup(lambda: {u: (str(i), u) for i, u in enumerate(uuids)})
        uids = getattr(args, "torch_probe_uids", [])
        sources.append(ProbeDirectorySource(directory, trusted_uids=uids, gpus=gpus))
    return sources


def _gpu_sources(backend: str, args: argparse.Namespace) -> list[Source]:
    if backend == "simulated":
        from exporter.sources.simulated import SimulatedSource

        return [
            SimulatedSource(
                gpus=args.simulate_gpus,
                model=args.simulate_model,
                seed=args.simulate_seed,
                scenarios=args.scenarios,
                processes=getattr(args, "collect_processes", False),
                mig=getattr(args, "simulate_mig", 0),
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


def build_harness(args: argparse.Namespace) -> tuple[Engine, list[Source], BuildPlan]:
    """The inference harness (not started), its sources (its own figures and this process's
    PyTorch allocator) and what it will build here. ValueError, said in one line, when it
    cannot run here: checked now, before anything listens or loads."""
    try:
        from exporter.harness.build import plan_build
        from exporter.harness.engine import Engine
    except ImportError as exc:
        raise ValueError(
            f"--harness needs PyTorch ({exc.name or exc} is not installed): "
            "pip install 'gpu-inference-exporter[harness]'"
        ) from None
    from exporter.harness.config import EngineConfig
    from exporter.sources.harness import HarnessSource
    from exporter.sources.torch import TorchAllocatorSource

    config = EngineConfig(
        preset=args.harness_preset,
        weights=args.harness_weights,
        block_size=args.harness_block_size,
        kv_cache_memory=args.harness_kv_cache_memory,
        device=args.harness_device,
        dtype=args.harness_dtype,
    )
    plan = plan_build(config)
    engine = Engine(config)
    return engine, [HarnessSource(engine.metrics), TorchAllocatorSource()], plan


def harness_wanted(args: argparse.Namespace, backend: str = "simulated") -> bool:
    """--harness: yes (a missing PyTorch is then an error); --no-harness: no. Neither: with the
    simulated backend (the demo), when PyTorch is installed, else no, said in one log line; with
    any other backend no, said in one line: the harness runs a model and takes KV memory on the
    GPU the exporter watches, which a node serving real traffic must ask for."""
    wanted = getattr(args, "harness", False)
    if wanted is not None:
        return bool(wanted)
    if backend != "simulated":
        log.info(
            "the inference harness is off: with the %s backend it is opt-in (--harness), as it "
            "runs a model on the GPU it monitors",
            backend,
        )
        return False
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


def build_harness_api(
    args: argparse.Namespace,
    engine: Engine,
    plan: BuildPlan,
    security: WebSecurity | None = None,
) -> ApiServer:
    """The harness's HTTP API on --harness.listen-address, with its limits and load;
    ValueError for limits or load that contradict the model or each other."""
    from exporter.harness.api.admission import AdmissionLimits
    from exporter.harness.api.checks import check_harness_limits
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
    check_harness_limits(limits, load, plan.model_config.name, plan.model_config.max_seq_len)
    address = args.harness_listen_address
    settings = ApiSettings(
        address.host, address.port, limits, load, listener_limits(args), security
    )
    return ApiServer(engine, settings)


def listener_limits(args: argparse.Namespace) -> ListenerLimits:
    """The bounds of both listeners, from --web.* flags (the defaults without them)."""
    defaults = ListenerLimits()
    timeout = getattr(args, "web_read_timeout", None) or defaults.header_timeout
    return ListenerLimits(
        header_timeout=timeout,
        body_timeout=timeout,
        max_connections=getattr(args, "web_max_connections", None) or defaults.max_connections,
        drain_timeout=getattr(args, "web_drain_timeout", None) or defaults.drain_timeout,
    )


def build_runtime(
    *,
    backend: str,
    args: argparse.Namespace,
    const_labels: Labels,
    static_samples: Sequence[AnySample] = (),
) -> Runtime:
    """Everything `serve` runs; ValueError (one line) for a configuration that cannot work,
    such as a broken web configuration file or a harness that cannot run here."""
    security = WebSecurity(getattr(args, "web_config_file", None), "--web.config.file")
    harness_security = WebSecurity(
        getattr(args, "harness_web_config_file", None), "--harness.web.config.file"
    )
    sources = build_sources(backend, args)
    harness = harness_api = None
    if harness_wanted(args, backend):
        harness, harness_sources, plan = build_harness(args)
        sources += harness_sources
        harness_api = build_harness_api(args, harness, plan, harness_security)
    elif args.harness_load > 0:
        raise ValueError(f"--harness.load {args.harness_load:g} needs the harness (and PyTorch)")
    gpu_backend = backend if backend != "none" else None
    sampler = Sampler(
        sources,
        interval=args.interval,
        timeout=args.timeout,
        const_labels=const_labels,
        static_samples=static_samples,
        gpu_backend=gpu_backend,
        process_metrics=not getattr(args, "disable_exporter_metrics", False),
        keep_series=args.keep_series,
    )
    shutdown = Shutdown()
    ready_checks = [shutdown.readiness]
    if harness is not None:
        ready_checks.append(harness.readiness)
    telemetry_path = getattr(args, "telemetry_path", "/metrics")
    app = build_app(sampler, ready_checks=ready_checks, telemetry_path=telemetry_path)
    security.install(app)
    return Runtime(sampler, app, harness, harness_api, shutdown, security)


async def run_until_signalled(
    runtime: Runtime,
    address: ListenAddress,
    signals: Sequence[signal.Signals],
    limits: ListenerLimits | None = None,
) -> int:
    """Listen on both addresses (ListenError before any model loads), start the harness,
    serve and collect until one of `signals`; then drain within the limits and return 0."""
    limits = limits or ListenerLimits()
    loop = asyncio.get_running_loop()
    shutdown = runtime.shutdown
    shutdown.drain_timeout = limits.drain_timeout
    for sig in signals:
        loop.add_signal_handler(sig, shutdown.handle, sig)
    security = runtime.security or WebSecurity(None)
    listener = Listener(
        runtime.app,
        address.host,
        address.port,
        limits,
        flag="--web.listen-address",
        ssl_context=security.ssl_context,
    )
    collecting: asyncio.Task[None] | None = None
    try:
        await listener.start()
        log.info(
            "listening on %s://%s%s (%s; sources: %s, interval %gs)",
            security.scheme,
            address,
            runtime.app[TELEMETRY_PATH_KEY],
            security.config.describe(),
            ", ".join(runtime.sampler.source_names) or "none",
            runtime.sampler.interval,
        )
        if runtime.harness_api is not None:
            await runtime.harness_api.start()
        if runtime.harness is not None:
            runtime.harness.start()  # loads and warms up on its own thread; scrapes go on
        collecting = asyncio.create_task(runtime.sampler.run(), name="sampler")
        stopping = asyncio.create_task(shutdown.requested.wait(), name="stop")
        done, _ = await asyncio.wait({collecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if collecting in done:
            collecting.result()  # the sampler never returns: re-raise what killed it
        stopping.cancel()
        return 0
    finally:
        await _drain(runtime, listener, limits.drain_timeout)
        if collecting is not None:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
        runtime.sampler.close()
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _drain(runtime: Runtime, listener: Listener, timeout: float) -> None:
    """Within about `timeout` seconds: the harness API stops taking connections and lets its
    requests in flight finish; the metrics listener serves on meanwhile (/readyz saying why
    it fails, a last scrape) and stops next; then the engine stops (a daemon thread: it is
    not waited for long)."""
    started = time.monotonic()
    deadline = started + timeout + 0.5
    if runtime.harness_api is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.harness_api.stop(), timeout + 0.5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listener.stop(), max(0.5, deadline - time.monotonic()))
    if runtime.harness is not None:
        await asyncio.to_thread(runtime.harness.stop, 2.0)
    if runtime.shutdown.signal is not None:
        log.info("stopped (drained in %.1fs)", time.monotonic() - started)
