"""Simulated MIG (--simulate.mig) and the log lines of the simulated fleet's scenarios."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.sampler import Sampler
from exporter.server import build_app
from exporter.sources.simulated import SimulatedSource, parse_scenario
from tests.test_simulated_fleet import FakeClock

MIG_FAMILIES = {
    "gpu_mig_info",
    "gpu_mig_memory_used_bytes",
    "gpu_mig_memory_free_bytes",
    "gpu_mig_memory_total_bytes",
}


def by_family(samples, name):  # type: ignore[no-untyped-def]
    return {s.labels: s.value for s in samples if s.name == name}


def test_the_last_n_gpus_are_in_mig_mode_with_three_devices_each():
    clock = FakeClock()
    source = SimulatedSource(gpus=4, mig=2, clock=clock)
    clock.t += 30
    samples = source.collect()
    info = by_family(samples, "gpu_mig_info")
    parents = {dict(labels)["gpu"] for labels in info}
    assert parents == {"2", "3"}
    names = sorted(dict(labels)["name"] for labels in info if dict(labels)["gpu"] == "2")
    assert names == ["MIG 1g.10gb", "MIG 2g.20gb", "MIG 3g.40gb"]
    mig_uuids = [dict(labels)["mig_uuid"] for labels in info]
    assert len(set(mig_uuids)) == 6 and all(u.startswith("MIG-") for u in mig_uuids)
    used = by_family(samples, "gpu_mig_memory_used_bytes")
    free = by_family(samples, "gpu_mig_memory_free_bytes")
    total = by_family(samples, "gpu_mig_memory_total_bytes")
    assert used.keys() == free.keys() == total.keys() and len(used) == 6
    for labels in used:
        assert 0 < used[labels] < total[labels]
        assert used[labels] + free[labels] == total[labels]
    # the devices share the parent's memory: their totals fit in it
    parent_total = by_family(samples, "gpu_memory_total_bytes")
    for gpu in ("2", "3"):
        ptotal = next(v for k, v in parent_total.items() if dict(k)["gpu"] == gpu)
        assert sum(v for k, v in total.items() if dict(k)["gpu"] == gpu) < ptotal


def test_mig_devices_follow_a_leak_on_their_gpu_and_vanish_when_it_is_lost():
    clock = FakeClock()
    scenarios = [
        parse_scenario("memory_leak:gpu=1,start=10,ramp=60"),
        parse_scenario("gpu_lost:gpu=1,start=200"),
    ]
    source = SimulatedSource(gpus=2, mig=1, scenarios=scenarios, clock=clock)
    clock.t += 5
    before = sum(by_family(source.collect(), "gpu_mig_memory_used_bytes").values())
    clock.t += 100
    after = sum(by_family(source.collect(), "gpu_mig_memory_used_bytes").values())
    assert after > before * 1.2
    clock.t += 200
    assert not {s.name for s in source.collect()} & MIG_FAMILIES


def test_same_seed_same_mig_devices():
    def info(seed: int) -> set:
        return set(
            by_family(
                SimulatedSource(gpus=2, mig=2, seed=seed, clock=FakeClock()).collect(),
                "gpu_mig_info",
            )
        )

    assert info(1) == info(1) != info(2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gpus": 2, "mig": 3}, "the fleet has 2 GPUs"),
        ({"gpus": 2, "mig": 1, "model": "L40S 48GB"}, "has no MIG mode"),
    ],
)
def test_impossible_mig_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulatedSource(**kwargs)


def test_scenarios_starting_and_ending_and_a_gpu_lost_and_back_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="exporter.sources.simulated")
    clock = FakeClock()
    scenarios = [
        parse_scenario("thermal_throttle:gpu=0,start=10,duration=20"),
        parse_scenario("gpu_lost:gpu=1,start=15,duration=30"),
    ]
    source = SimulatedSource(gpus=2, scenarios=scenarios, clock=clock)
    lines = []
    for t in (5, 12, 13, 16, 31, 46, 60):
        clock.t = 5000.0 + t
        caplog.clear()
        source.collect()
        lines.append([r.getMessage() for r in caplog.records])
    uuid1 = source.uuids[1]
    assert lines == [
        [],
        ["simulated scenario thermal_throttle:gpu=0,start=10,duration=20 started at 12s"],
        [],
        [f"simulated GPU 1 ({uuid1}) is lost (gpu_lost:gpu=1,start=15,duration=30)"],
        ["simulated scenario thermal_throttle:gpu=0,start=10,duration=20 ended at 31s"],
        [f"simulated GPU 1 ({uuid1}) is back (gpu_lost:gpu=1,start=15,duration=30 ended)"],
        [],
    ]


def test_the_landing_page_lists_lost_gpus():
    source = SimulatedSource(gpus=3, scenarios=[parse_scenario("gpu_lost:gpu=2")])

    async def scenario() -> str:
        sampler = Sampler([source])
        await sampler.cycle()
        async with TestClient(TestServer(build_app(sampler))) as client:
            return await (await client.get("/")).text()

    page = asyncio.run(scenario())
    assert "<h2>Lost GPUs</h2>" in page
    assert f"GPU 2 ({source.uuids[2]})" in page
    assert f"GPU 1 ({source.uuids[1]})" not in page
