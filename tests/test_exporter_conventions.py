"""What every Prometheus exporter has: process_* metrics (and the flag that drops them),
--version, --web.telemetry-path."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.cli import build_parser, main
from exporter.process_metrics import ProcessMetrics
from exporter.sampler import Sampler
from exporter.server import build_app
from tests.conftest import series

PROCESS_FAMILIES = (
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
)


def test_process_metrics_describe_this_process(tmp_path):
    process = ProcessMetrics()
    samples = {s.name: s.value for s in process.samples()}
    assert set(samples) == set(PROCESS_FAMILIES)
    files = [(tmp_path / str(i)).open("w") for i in range(3)]
    try:
        opened = {s.name: s.value for s in process.samples()}["process_open_fds"]
    finally:
        for f in files:
            f.close()
    assert opened == samples["process_open_fds"] + 3
    assert samples["process_resident_memory_bytes"] > 10e6  # a Python process with aiohttp
    assert 0 < time.time() - samples["process_start_time_seconds"] < 3600
    assert samples["process_cpu_seconds_total"] > 0


def test_the_sampler_adds_them_only_when_asked():
    async def families(process_metrics: bool) -> set[str]:
        sampler = Sampler([], process_metrics=process_metrics)
        snapshot = await sampler.cycle()
        return {line.split()[2] for line in snapshot.body("text", False).decode().splitlines()
                if line.startswith("# TYPE")}  # fmt: skip

    with_process = asyncio.run(families(True))
    assert {n.removesuffix("_total") for n in PROCESS_FAMILIES} <= {
        n.removesuffix("_total") for n in with_process
    }
    assert not any(n.startswith("process_") for n in asyncio.run(families(False)))


@pytest.mark.e2e
def test_serve_exports_process_metrics_unless_disabled(exporter_factory):
    with exporter_factory("--backend=simulated", "--simulate.gpus=1") as exp:
        metrics = exp.metrics()
        for name in PROCESS_FAMILIES:
            assert series(metrics, name), name
    with exporter_factory(
        "--backend=simulated", "--simulate.gpus=1", "--web.disable-exporter-metrics"
    ) as exp:
        metrics = exp.metrics()
        assert not [k for k in metrics if k[0].startswith("process_")]
        assert series(metrics, "exporter_source_up")  # the exporter's own health stays


@pytest.mark.parametrize(
    "argv", [["--version"], ["serve", "--version"], ["--log.level=debug", "--version"]]
)
def test_version(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("gpu-inference-exporter 0.") and "Python 3." in out


@pytest.mark.parametrize("bad", ["metrics", "/healthz", "/readyz", "/m?x"])
def test_telemetry_path_is_checked(bad, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", f"--web.telemetry-path={bad}"])
    assert "invalid telemetry path" in capsys.readouterr().err


def test_telemetry_path_moves_the_metrics():
    async def scenario() -> tuple[int, int, str]:
        sampler = Sampler([])
        await sampler.cycle()
        app = build_app(sampler, telemetry_path="/x/metrics")
        async with TestClient(TestServer(app)) as client:
            moved = (await client.get("/x/metrics")).status
            old = (await client.get("/metrics")).status
            landing = await (await client.get("/")).text()
        return moved, old, landing

    moved, old, landing = asyncio.run(scenario())
    assert (moved, old) == (200, 404)
    assert 'href="/x/metrics"' in landing
