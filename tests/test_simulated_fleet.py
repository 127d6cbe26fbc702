"""The simulated fleet: coverage of the catalog, physical plausibility, determinism, scenarios;
and the helpers it shares with the NVML source (Xid counters, clock-event reasons)."""

import itertools
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from exporter.catalog import FAMILIES, Kind
from exporter.sources import Source
from exporter.sources.clock_events import (
    CLOCK_EVENT_REASONS,
    bitmask_from_reasons,
    reasons_from_bitmask,
)
from exporter.sources.simulated import GPU_MODELS, SimulatedSource, parse_scenario
from exporter.sources.xid import WATCHED_XIDS, XidCounters
from exporter.xid_catalog import XID_CATALOG, xid_bucket

H100 = GPU_MODELS["H100 SXM 80GB"]
#: Not on a default simulated GPU: the MIG-only families (--simulate.mig, test_simulated_mig.py) and
#: the opt-in per-process memory (SimulatedSource(processes=True), tests/test_nvml_wiring.py).
NOT_BY_DEFAULT = {
    "gpu_mig_info",
    "gpu_mig_memory_used_bytes",
    "gpu_mig_memory_free_bytes",
    "gpu_mig_memory_total_bytes",
    "gpu_process_memory_used_bytes",
}
DEVICE_FAMILIES = [
    f
    for f in FAMILIES.values()
    if f.name.startswith(("gpu_", "torch_cuda_"))
    and "gpu" in f.labels
    and f.name not in NOT_BY_DEFAULT
]


UUID_RE = r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


class FakeClock:
    """A clock the test moves by hand (it starts far from 0: the fleet counts from construction)."""

    def __init__(self, t: float = 5000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fleet(*scenarios: str, gpus: int = 8, model: str = H100.name, seed: int = 0):
    clock = FakeClock()
    parsed = [parse_scenario(s) for s in scenarios]
    return SimulatedSource(gpus=gpus, model=model, seed=seed, scenarios=parsed, clock=clock), clock


class Snap(dict):
    """{(name, labels): value} of one collection, with a lookup index built on first use."""

    _index: dict | None = None

    def lookup(self, name: str, gpu: str) -> list[tuple[dict, float]]:
        if self._index is None:
            self._index = {}
            for (n, lbl), v in self.items():
                labels = dict(lbl)
                self._index.setdefault((n, labels["gpu"]), []).append((labels, v))
        return self._index.get((name, gpu), [])


def snapshot_at(source, clock, t: float) -> Snap:
    """Collect at t seconds after construction."""
    clock.t = 5000.0 + t
    return Snap({(s.name, s.labels): s.value for s in source.collect()})


def run(source, clock, times):
    return [snapshot_at(source, clock, t) for t in times]


def val(snap: Snap, name: str, gpu: int | str, **labels: str) -> float:
    """The value of the one series of `name` on `gpu` that has `labels`."""
    found = [v for lbl, v in snap.lookup(name, str(gpu)) if labels.items() <= lbl.items()]
    assert len(found) == 1, f"{name} {gpu} {labels}: {len(found)} series"
    return found[0]


def of_gpu(snap: dict, gpu: int | str) -> dict:
    return {k: v for k, v in snap.items() if dict(k[1])["gpu"] == str(gpu)}


def names_of_gpu(snap: dict, gpu: int | str) -> set[str]:
    return {name for name, _ in of_gpu(snap, gpu)}


# --- the healthy fleet -----------------------------------------------------------------------


def test_it_is_a_source():
    source, _ = fleet()
    assert isinstance(source, Source)
    assert source.name == "simulated"
    source.close()


def test_a_healthy_fleet_emits_every_device_family_for_every_gpu():
    source, clock = fleet()
    snap = snapshot_at(source, clock, 3.0)
    for gpu in range(8):
        names = names_of_gpu(snap, gpu)
        for fam in DEVICE_FAMILIES:
            assert fam.name in names, f"gpu {gpu} lacks {fam.name}"
    assert {name for name, _ in snap} == {f.name for f in DEVICE_FAMILIES}
    # every label value a family promises, per GPU
    for gpu in range(8):
        g = of_gpu(snap, gpu)

        def values_of(name, label, g=g):
            return {dict(k[1])[label] for k in g if k[0] == name}

        assert values_of("gpu_temperature_celsius", "sensor") == {"gpu", "memory"}
        assert values_of("gpu_clock_hertz", "clock") == {"graphics", "sm", "memory", "video"}
        assert values_of("gpu_clock_max_hertz", "clock") == {"graphics", "sm", "memory", "video"}
        assert values_of("gpu_clock_event_active", "reason") == set(CLOCK_EVENT_REASONS)
        assert values_of("gpu_clock_event_seconds_total", "reason") == set(CLOCK_EVENT_REASONS)
        assert values_of("gpu_nvlink_link_up", "link") == {str(i) for i in range(18)}
        assert values_of("gpu_nvlink_errors_total", "type") == {
            "crc_flit",
            "crc_data",
            "replay",
            "recovery",
        }
        assert values_of("gpu_ecc_errors_total", "type") == {"corrected", "uncorrected"}
        assert values_of("gpu_remapped_rows", "kind") == {"correctable", "uncorrectable"}
        assert values_of("gpu_xid_errors_total", "xid") == {str(c) for c in WATCHED_XIDS}


def test_samples_carry_their_catalog_labels_in_catalog_order():
    source, _ = fleet()
    for s in source.collect():
        assert tuple(k for k, _ in s.labels) == FAMILIES[s.name].labels


def test_gpu_info_identifies_each_gpu():
    source, clock = fleet()
    snap = snapshot_at(source, clock, 0.0)
    infos = [dict(k[1]) for k in snap if k[0] == "gpu_info"]
    assert len(infos) == 8 and all(snap[("gpu_info", tuple(i.items()))] == 1 for i in infos)
    assert {i["gpu"] for i in infos} == {str(i) for i in range(8)}
    assert len({i["pci_bus_id"] for i in infos}) == 8
    assert len({i["uuid"] for i in infos}) == 8
    for i in infos:
        assert re.fullmatch(UUID_RE, i["uuid"])
        assert re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{2}:00\.0", i["pci_bus_id"])
        assert (i["name"], i["driver_version"], i["cuda_version"], i["backend"]) == (
            "H100 SXM 80GB",
            "550.90.07",
            "12.4",
            "simulated",
        )
    assert infos[0]["pci_bus_id"] == "00000000:18:00.0"
    # every other series of a GPU carries the same uuid as its gpu_info
    uuid_of = {i["gpu"]: i["uuid"] for i in infos}
    for _, labels in snap:
        assert dict(labels)["uuid"] == uuid_of[dict(labels)["gpu"]]


def test_healthy_values_stay_in_physical_ranges_over_ten_minutes():
    source, clock = fleet()
    m = H100
    previous_energy = {}
    for snap in run(source, clock, range(0, 600, 5)):
        for gpu in range(8):

            def v(name, snap=snap, gpu=gpu, **lb):
                return val(snap, name, gpu, **lb)

            assert v("gpu_up") == 1
            util = v("gpu_utilization_ratio")
            assert 0.05 <= util <= 1.0  # a serving GPU: busy, never idle
            assert 0.0 <= v("gpu_memory_copy_utilization_ratio") <= util
            total, used = v("gpu_memory_total_bytes"), v("gpu_memory_used_bytes")
            free, reserved = v("gpu_memory_free_bytes"), v("gpu_memory_reserved_bytes")
            assert total == m.memory_total_bytes and reserved == m.memory_reserved_bytes
            assert used + free + reserved == total
            assert 0.60 * total <= used <= 0.75 * total
            allocated = v("torch_cuda_memory_allocated_bytes")
            torch_reserved = v("torch_cuda_memory_reserved_bytes")
            split = v("torch_cuda_memory_inactive_split_bytes")
            assert 0 < allocated <= torch_reserved <= used
            assert 0 <= split <= torch_reserved - allocated
            frag = v("torch_cuda_fragmentation_ratio")
            assert frag == pytest.approx(split / torch_reserved)
            assert 0.02 <= frag <= 0.08
            assert v("torch_cuda_alloc_retries_total") == v("torch_cuda_ooms_total") == 0
            t_gpu = v("gpu_temperature_celsius", sensor="gpu")
            t_mem = v("gpu_temperature_celsius", sensor="memory")
            assert 25 <= t_gpu <= 95 and 25 <= t_mem <= 95
            assert 2 <= t_mem - t_gpu <= 8
            power, limit = v("gpu_power_watts"), v("gpu_power_limit_watts")
            assert limit == m.power_limit_watts
            assert m.idle_watts * 0.95 <= power <= limit
            for clock_name in ("graphics", "sm", "memory", "video"):
                hz, top = (
                    v("gpu_clock_hertz", clock=clock_name),
                    v("gpu_clock_max_hertz", clock=clock_name),
                )
                assert 0 < hz <= top
                assert hz % 1_000_000 == 0  # whole MHz, as NVML reports
            assert v("gpu_clock_hertz", clock="sm") >= 0.9 * m.max_sm_hertz  # busy: boosted
            assert v("gpu_clock_hertz", clock="memory") == m.max_memory_hertz
            for reason in CLOCK_EVENT_REASONS:
                assert v("gpu_clock_event_active", reason=reason) == 0
                assert v("gpu_clock_event_seconds_total", reason=reason) == 0
            for link in range(18):
                assert v("gpu_nvlink_link_up", link=str(link)) == 1
            for kind in ("crc_flit", "crc_data", "replay", "recovery"):
                assert v("gpu_nvlink_errors_total", type=kind) == 0
            assert v("gpu_ecc_errors_total", type="corrected") == 0
            assert v("gpu_ecc_errors_total", type="uncorrected") == 0
            assert v("gpu_remapped_rows", kind="uncorrectable") == 0
            assert v("gpu_row_remap_pending") == v("gpu_row_remap_failure") == 0
            assert v("gpu_pcie_replays_total") == 0
            assert all(
                x == 0 for (n, _), x in of_gpu(snap, gpu).items() if n == "gpu_xid_errors_total"
            )
            energy = v("gpu_energy_joules_total")
            assert energy > previous_energy.get(gpu, -1.0)
            previous_energy[gpu] = energy


def test_load_cycles_differ_between_gpus_and_over_time():
    source, clock = fleet()
    snaps = run(source, clock, range(0, 300, 10))
    per_gpu = [[val(s, "gpu_utilization_ratio", g) for s in snaps] for g in range(8)]
    for series in per_gpu:
        assert max(series) - min(series) > 0.25  # a cycle of a few minutes
    assert len({round(series[0], 6) for series in per_gpu}) == 8


def test_power_energy_and_nvlink_traffic_follow_utilization():
    source, clock = fleet()
    a, b = run(source, clock, [100.0, 160.0])
    for gpu in range(8):
        watts = (
            val(b, "gpu_energy_joules_total", gpu) - val(a, "gpu_energy_joules_total", gpu)
        ) / 60
        assert H100.idle_watts < watts < H100.power_limit_watts
        tx = (
            val(b, "gpu_nvlink_transmit_bytes_total", gpu)
            - val(a, "gpu_nvlink_transmit_bytes_total", gpu)
        ) / 60
        rx = (
            val(b, "gpu_nvlink_receive_bytes_total", gpu)
            - val(a, "gpu_nvlink_receive_bytes_total", gpu)
        ) / 60
        assert 5e9 < tx < 60e9 and 5e9 < rx < 60e9  # tens of GB/s
    # across GPUs and times, higher utilization means more power
    pairs = sorted(
        (val(s, "gpu_utilization_ratio", g), val(s, "gpu_power_watts", g))
        for s in (a, b)
        for g in range(8)
    )
    assert pairs[0][1] < pairs[-1][1]


def test_a_model_without_nvlink_emits_no_nvlink_families():
    source, clock = fleet(model="L40S 48GB", gpus=2)
    snap = snapshot_at(source, clock, 2.0)
    for gpu in range(2):
        names = names_of_gpu(snap, gpu)
        assert not {n for n in names if n.startswith("gpu_nvlink_")}
        expected = {f.name for f in DEVICE_FAMILIES if not f.name.startswith("gpu_nvlink_")}
        assert names == expected
        assert val(snap, "gpu_memory_total_bytes", gpu) == 46_068 * 1024 * 1024


@pytest.mark.parametrize("model", list(GPU_MODELS))
def test_every_model_is_plausible(model):
    spec = GPU_MODELS[model]
    source, clock = fleet(model=model, gpus=2)
    snap = snapshot_at(source, clock, 30.0)
    for gpu in range(2):
        assert val(snap, "gpu_power_watts", gpu) <= spec.power_limit_watts
        assert val(snap, "gpu_clock_max_hertz", gpu, clock="sm") == spec.max_sm_hertz
        assert 25 <= val(snap, "gpu_temperature_celsius", gpu, sensor="gpu") <= 95
        links = [k for k in of_gpu(snap, gpu) if k[0] == "gpu_nvlink_link_up"]
        assert len(links) == spec.nvlink_links


# --- determinism -----------------------------------------------------------------------------

IRREGULAR = [0.0, 0.3, 0.31, 1.7, 2.0, 9.5, 10.0, 33.3, 34.0, 90.0, 91.25, 200.0]


def test_same_seed_and_clock_readings_give_identical_samples():
    s1, c1 = fleet("thermal_throttle:gpu=1,start=5", "xid:gpu=2,code=13,every=7", seed=42)
    s2, c2 = fleet("thermal_throttle:gpu=1,start=5", "xid:gpu=2,code=13,every=7", seed=42)
    for t in IRREGULAR:
        c1.t = c2.t = 5000.0 + t
        assert s1.collect() == s2.collect()


def test_unchanged_values_reuse_their_sample_and_changed_ones_are_fresh():
    """A cycle hands out last cycle's sample when the value is the same; the figures do not
    depend on it (a fleet that forgets its samples every cycle sees the same)."""
    kept, clock = fleet("xid:gpu=2,code=13,every=7", "ecc_uncorrectable:gpu=1,start=20", seed=7)
    forgetful, clock2 = fleet(
        "xid:gpu=2,code=13,every=7", "ecc_uncorrectable:gpu=1,start=20", seed=7
    )
    before = {(s.name, s.labels): s for s in kept.collect()}
    forgetful.collect()
    reused = changed = 0
    for t in IRREGULAR[1:]:
        clock.t = clock2.t = 5000.0 + t
        for g in forgetful._gpus:  # the reference: every sample built afresh
            g.last = g._templates()
        now = kept.collect()
        assert now == forgetful.collect()
        for sample in now:
            last = before.get((sample.name, sample.labels))
            if last is not None and last.value == sample.value:
                reused += last is sample
            elif last is not None:
                changed += 1
        before = {(s.name, s.labels): s for s in now}
    assert reused > 3 * changed > 0  # most series (limits, states, counters) stand still
    assert kept._xids.count(2, 13) > 0  # the Xid counter moved and was seen


def test_xid_samples_follow_every_record_between_reads():
    counters = XidCounters(watched=[48, 79])
    counters.add_gpu(0, "GPU-a")
    first = counters.samples(0)
    assert counters.samples(0) == first and counters.samples(0)[0] is first[0]
    counters.record(0, 79)
    assert [s.value for s in counters.samples(0)] == [0, 1]
    assert counters.samples(0)[0] is first[0]  # Xid 48 did not move: the same sample
    counters.record(0, 13)  # a new code between two reads appears at once
    assert [(s.label("xid"), s.value) for s in counters.samples()] == [
        ("13", 1),
        ("48", 0),
        ("79", 1),
    ]


def test_figures_do_not_depend_on_the_process_hash_seed():
    code = (
        "from exporter.sources.simulated import SimulatedSource, parse_scenario\n"
        "t = [0.0]\n"
        "s = SimulatedSource(clock=lambda: t[0], seed=3,"
        " scenarios=[parse_scenario('xid:gpu=1,code=13,every=4')])\n"
        "for i in range(12):\n"
        "    t[0] = i * 1.7\n"
        "    out = s.collect()\n"
        "print(repr(out))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1 and "gpu_xid_errors_total" in outputs.pop()


def test_a_different_seed_gives_different_figures_and_identities():
    a = snapshot_at(*fleet(seed=1), 10.0)
    b = snapshot_at(*fleet(seed=2), 10.0)
    assert a.keys() != b.keys()  # other UUIDs
    assert val(a, "gpu_utilization_ratio", 0) != val(b, "gpu_utilization_ratio", 0)
    assert val(a, "gpu_memory_used_bytes", 0) != val(b, "gpu_memory_used_bytes", 0)


def test_the_global_random_generator_is_neither_used_nor_disturbed():
    import random

    random.seed(7)
    expected = random.random()
    random.seed(7)
    source, clock = fleet()
    run(source, clock, [1.0, 5.0])
    assert random.random() == expected


EVERY_SCENARIO = [
    "thermal_throttle:gpu=0,start=20,duration=60",
    "power_cap:gpu=1,start=10,duration=40",
    "memory_leak:gpu=2,start=5,duration=100,ramp=30",
    "fragmentation:gpu=3,start=5,duration=100,ramp=30",
    "gpu_lost:gpu=4,start=30,duration=40,reboot=30",
    "xid:gpu=5,start=3,duration=50,code=13,every=3",
    "nvlink_down:gpu=6,start=10,duration=45,link=3",
    "ecc_uncorrectable:gpu=7,start=4,duration=80,every=7",
    "row_remap_pending:gpu=6,start=60,duration=20",
    "idle:gpu=5,start=40,duration=60",
    "recovery_action:gpu=2,start=120,duration=30,action=drain_and_reset",
    "thermal_flap:gpu=1,start=60,duration=90,period=20",
    "power_at_limit:gpu=0,start=90,duration=60",
]


def test_values_do_not_depend_on_how_often_collect_is_called():
    fast, fast_clock = fleet(*EVERY_SCENARIO)
    slow, slow_clock = fleet(*EVERY_SCENARIO)
    for tenth in range(0, 901):  # every 0.1 s for 90 s
        t = tenth / 10
        fast_snap = snapshot_at(fast, fast_clock, t)
        if tenth % 50 == 0:  # every 5 s
            assert snapshot_at(slow, slow_clock, t) == fast_snap, f"differ at t={t}"


def test_event_counts_do_not_depend_on_how_often_collect_is_called():
    counts = {}
    for step in (0.1, 5.0):
        source, clock = fleet(
            "xid:gpu=5,start=3,code=13,every=3", "ecc_uncorrectable:gpu=7,start=4,every=7"
        )
        snap = run(source, clock, [i * step for i in range(int(60 / step) + 1)])[-1]
        counts[step] = (
            val(snap, "gpu_xid_errors_total", 5, xid="13"),
            val(snap, "gpu_ecc_errors_total", 7, type="uncorrected"),
            val(snap, "gpu_xid_errors_total", 7, xid="48"),
        )
    # Xid 13 at 3, 6, ..., 60: 20 events; ECC at 4, 11, ..., 60: 9; Xid 48 once
    assert counts[0.1] == counts[5.0] == (20, 9, 1)


# --- counters, clock and validation ----------------------------------------------------------


def test_counters_never_decrease_over_a_long_run_with_every_scenario():
    source, clock = fleet(*EVERY_SCENARIO)
    counters = {f.name for f in FAMILIES.values() if f.kind is Kind.COUNTER}
    last: dict = {}
    times = [i * 2.5 for i in range(400)] + [1000.0 + i * 0.7 for i in range(50)]
    for snap in run(source, clock, times):
        for key, value in snap.items():
            if key[0] in counters:
                assert value >= last.get(key, 0.0), key
                last[key] = value
    assert min(v for k, v in last.items() if k[0] == "gpu_energy_joules_total") > 0
    assert min(v for k, v in last.items() if k[0] == "torch_cuda_ooms_total") == 0
    assert max(v for k, v in last.items() if k[0] == "torch_cuda_ooms_total") > 0


def test_counters_grow_at_the_current_rate_between_grid_points():
    source, clock = fleet("power_cap:gpu=1,start=10")
    snaps = run(source, clock, [10.0, 10.25, 10.5, 10.75, 11.0])
    energy = [val(s, "gpu_energy_joules_total", 1) for s in snaps]
    steps = [b - a for a, b in itertools.pairwise(energy)]
    assert steps == pytest.approx([steps[0]] * 4) and steps[0] > 0
    assert energy[-1] - energy[0] == pytest.approx(val(snaps[0], "gpu_power_watts", 1), abs=1e-3)
    capped = [val(s, "gpu_clock_event_seconds_total", 1, reason="sw_power_cap") for s in snaps]
    assert capped == [0.0, 0.25, 0.5, 0.75, 1.0]
    tx = [val(s, "gpu_nvlink_transmit_bytes_total", 1) for s in snaps]
    assert tx[2] - tx[0] == pytest.approx((tx[4] - tx[0]) / 2)


def test_a_clock_that_steps_back_does_not_turn_counters_back():
    source, clock = fleet()
    a = snapshot_at(source, clock, 50.0)
    b = snapshot_at(source, clock, 20.0)
    assert b == a


def test_the_fleet_refuses_bad_arguments():
    with pytest.raises(ValueError, match="at least 1 GPU"):
        SimulatedSource(gpus=0)
    with pytest.raises(ValueError, match=r"unknown GPU model 'H100'.*'H100 SXM 80GB'.*'L40S 48GB'"):
        SimulatedSource(model="H100")
    with pytest.raises(ValueError, match=r"gpu=8 is out of range for a fleet of 8 GPU\(s\)"):
        SimulatedSource(scenarios=[parse_scenario("idle:gpu=8")])
    with pytest.raises(
        ValueError, match=r"gpu=2 is out of range for a fleet of 2 GPU\(s\) \(0-1\)"
    ):
        SimulatedSource(gpus=2, scenarios=[parse_scenario("idle:gpu=2")])
    with pytest.raises(ValueError, match="invalid scenario 'nvlink_down:gpu=0,link=18'"):
        SimulatedSource(scenarios=[parse_scenario("nvlink_down:gpu=0,link=18")])
    with pytest.raises(ValueError, match="L40S 48GB has no NVLink links"):
        SimulatedSource(model="L40S 48GB", scenarios=[parse_scenario("nvlink_down:gpu=0,link=0")])


# --- scenarios -------------------------------------------------------------------------------


def paired(scenario: str, times, **kw):
    """Snapshots of a fleet with `scenario` and of the same fleet without it."""
    with_it = run(*fleet(scenario, **kw), times)
    without = run(*fleet(**kw), times)
    return with_it, without


def assert_other_gpus_identical(with_it, without, gpu: int):
    for a, b in zip(with_it, without, strict=True):
        for other in range(8):
            if other != gpu:
                assert of_gpu(a, other) == of_gpu(b, other)


def gauges(snap, gpu, ignore=()):
    return {
        k: v
        for k, v in of_gpu(snap, gpu).items()
        if FAMILIES[k[0]].kind is Kind.GAUGE and k[0] not in ignore
    }


@pytest.mark.parametrize("scenario", EVERY_SCENARIO)
def test_a_scenario_touches_only_its_gpu_and_the_gpu_recovers_after_it(scenario):
    s = parse_scenario(scenario)
    times = [0.0, s.start + 1, s.start + 25, s.end - 1, s.end + 60, s.end + 150]
    with_it, without = paired(scenario, times)
    assert_other_gpus_identical(with_it, without, s.gpu)
    assert of_gpu(with_it[0], s.gpu) == of_gpu(without[0], s.gpu)  # before its start
    assert of_gpu(with_it[2], s.gpu) != of_gpu(without[2], s.gpu)  # it does something
    # back to normal: every gauge as without the fault, but the temperature (it cools with
    # inertia) and the remapped rows (a remap is permanent)
    after, normal = with_it[-1], without[-1]
    ignore = ("gpu_temperature_celsius", "gpu_remapped_rows")
    assert gauges(after, s.gpu, ignore) == gauges(normal, s.gpu, ignore)
    t_after = val(after, "gpu_temperature_celsius", s.gpu, sensor="gpu")
    assert t_after == pytest.approx(
        val(normal, "gpu_temperature_celsius", s.gpu, sensor="gpu"), abs=1
    )


def test_thermal_throttle_passes_90_celsius_fast_on_every_gpu_and_throttles():
    scenarios = [f"thermal_throttle:gpu={g},start={10 + 40 * g},duration=30" for g in range(8)]
    source, clock = fleet(*scenarios)
    baseline_src, baseline_clock = fleet()
    reached = {}
    for tenth in range(0, 4000, 10):
        t = tenth / 10
        snap = snapshot_at(source, clock, t)
        base = snapshot_at(baseline_src, baseline_clock, t)
        for g in range(8):
            start = 10 + 40 * g
            temp = val(snap, "gpu_temperature_celsius", g, sensor="gpu")
            if start <= t < start + 30 and temp > 90 and g not in reached:
                reached[g] = t - start
            if t == start + 25:  # held: hot, throttled, slow, cheap
                assert 90 < temp < 95
                assert val(snap, "gpu_clock_event_active", g, reason="sw_thermal_slowdown") == 1
                assert val(snap, "gpu_clock_event_active", g, reason="hw_thermal_slowdown") == 1
                assert val(snap, "gpu_clock_event_active", g, reason="hw_slowdown") == 1
                assert val(snap, "gpu_clock_hertz", g, clock="sm") < 0.5 * H100.max_sm_hertz
                assert val(snap, "gpu_power_watts", g) < 0.5 * val(base, "gpu_power_watts", g)
                assert (
                    val(snap, "gpu_clock_event_seconds_total", g, reason="sw_thermal_slowdown") > 5
                )
            if t == start + 90:  # cooled back
                assert val(snap, "gpu_temperature_celsius", g, sensor="gpu") < 80
                assert val(snap, "gpu_clock_event_active", g, reason="sw_thermal_slowdown") == 0
    assert sorted(reached) == list(range(8))
    assert max(reached.values()) <= 20, reached


def test_thermal_slowdown_starts_near_87_celsius():
    source, clock = fleet("thermal_throttle:gpu=0,start=0")
    for t in range(0, 40):
        snap = snapshot_at(source, clock, t)
        temp = val(snap, "gpu_temperature_celsius", 0, sensor="gpu")
        active = val(snap, "gpu_clock_event_active", 0, reason="sw_thermal_slowdown")
        if temp >= 87.1:
            assert active == 1, t
        elif temp <= 86.9:
            assert active == 0, t


def test_power_cap_pins_power_at_the_lowered_limit():
    for text, limit in (
        ("power_cap:gpu=1,start=10,duration=60", 385.0),
        ("power_cap:gpu=1,start=10,duration=60,limit=300", 300.0),
    ):
        source, clock = fleet(text)
        for t in range(12, 70, 4):
            snap = snapshot_at(source, clock, t)
            assert val(snap, "gpu_power_limit_watts", 1) == limit
            assert 0.99 * limit <= val(snap, "gpu_power_watts", 1) <= limit
            assert val(snap, "gpu_clock_event_active", 1, reason="sw_power_cap") == 1
            assert val(snap, "gpu_utilization_ratio", 1) >= 0.9
            assert val(snap, "gpu_clock_hertz", 1, clock="sm") < 0.8 * H100.max_sm_hertz
        snap = snapshot_at(source, clock, 71)
        assert val(snap, "gpu_power_limit_watts", 1) == H100.power_limit_watts
        assert val(snap, "gpu_clock_event_active", 1, reason="sw_power_cap") == 0
        assert val(snap, "gpu_clock_event_seconds_total", 1, reason="sw_power_cap") == 60


def test_memory_leak_fills_vram_then_retries_and_ooms():
    source, clock = fleet("memory_leak:gpu=2,start=10,duration=120")
    usable = H100.memory_total_bytes - H100.memory_reserved_bytes
    snaps = {t: snapshot_at(source, clock, t) for t in range(0, 200, 5)}
    used = [val(snaps[t], "gpu_memory_used_bytes", 2) for t in range(10, 75, 5)]
    assert used == sorted(used) and used[0] < 0.76 * H100.memory_total_bytes
    allocated = [val(snaps[t], "torch_cuda_memory_allocated_bytes", 2) for t in range(10, 75, 5)]
    assert allocated == sorted(allocated) and allocated[-1] - allocated[0] > 20e9
    s = snaps[65]
    assert val(s, "gpu_memory_free_bytes", 2) > 0
    assert val(s, "torch_cuda_alloc_retries_total", 2) == 0
    for t in (70, 100, 125):
        s = snaps[t]
        assert val(s, "gpu_memory_free_bytes", 2) == 0
        assert val(s, "gpu_memory_used_bytes", 2) == usable
        assert val(s, "torch_cuda_memory_reserved_bytes", 2) <= val(s, "gpu_memory_used_bytes", 2)
    assert val(snaps[70], "torch_cuda_alloc_retries_total", 2) == 1  # full at 70
    assert val(snaps[70], "torch_cuda_ooms_total", 2) == 0
    assert val(snaps[75], "torch_cuda_ooms_total", 2) == 1  # first OOM 5 s later
    assert val(snaps[125], "torch_cuda_ooms_total", 2) == 6  # then one per 10 s
    assert val(snaps[125], "torch_cuda_alloc_retries_total", 2) == 28
    after = snaps[135]  # the process restarted: memory back, counters kept
    assert val(after, "gpu_memory_used_bytes", 2) < 0.76 * H100.memory_total_bytes
    assert val(after, "torch_cuda_ooms_total", 2) == 6


def test_fragmentation_strands_memory_until_allocations_fail():
    source, clock = fleet("fragmentation:gpu=3,start=10,duration=120")
    ratio, crossed = {}, {}
    for t in range(0, 200):
        snap = snapshot_at(source, clock, t)
        ratio[t] = val(snap, "torch_cuda_fragmentation_ratio", 3)
        for threshold in (0.3, 0.5):
            if ratio[t] > threshold and threshold not in crossed:
                crossed[threshold] = t - 10
        if t == 10:
            start_allocated = val(snap, "torch_cuda_memory_allocated_bytes", 3)
            start_used = val(snap, "gpu_memory_used_bytes", 3)
        if t == 70:  # ramp done: reserved has taken the memory left
            assert val(snap, "gpu_memory_free_bytes", 3) == 0
            assert val(snap, "gpu_memory_used_bytes", 3) > start_used + 20e9
            allocated = val(snap, "torch_cuda_memory_allocated_bytes", 3)
            assert abs(allocated - start_allocated) < 0.1 * start_allocated  # did not grow
            assert val(snap, "torch_cuda_alloc_retries_total", 3) == 1
        if t == 130:
            assert val(snap, "torch_cuda_ooms_total", 3) == 6
    assert 0.02 <= ratio[9] <= 0.08 and ratio[131] <= 0.08
    assert 10 < crossed[0.3] < crossed[0.5] <= 60, crossed
    assert all(ratio[t] <= ratio[t + 1] + 0.01 for t in range(10, 69))  # climbs


def test_gpu_lost_leaves_only_identity_up_and_xid_for_that_gpu():
    times = [5.0, 10.0, 30.0, 59.0, 60.0, 90.0]
    with_it, without = paired("gpu_lost:gpu=3,start=10,duration=50", times)
    assert_other_gpus_identical(with_it, without, 3)
    assert names_of_gpu(with_it[0], 3) == names_of_gpu(without[0], 3)
    for snap in with_it[1:4]:
        assert names_of_gpu(snap, 3) == {"gpu_info", "gpu_up", "gpu_xid_errors_total"}
        assert val(snap, "gpu_up", 3) == 0
        assert val(snap, "gpu_xid_errors_total", 3, xid="79") == 1
        assert val(snap, "gpu_xid_errors_total", 3, xid="48") == 0  # pre-seeded codes stay
        assert snap[next(k for k in snap if k[0] == "gpu_info" and dict(k[1])["gpu"] == "3")] == 1
    for snap in with_it[4:]:
        assert names_of_gpu(snap, 3) == names_of_gpu(without[0], 3)
        assert val(snap, "gpu_up", 3) == 1
        assert val(snap, "gpu_xid_errors_total", 3, xid="79") == 1


def test_xid_counts_once_or_every_period_within_its_window():
    source, clock = fleet(
        "xid:gpu=5,start=5,duration=30,code=13,every=10",
        "xid:gpu=6,start=2,code=31",
        "xid:gpu=1,code=999",
    )
    expected = {0.0: 0, 4.99: 0, 5.0: 1, 14.9: 1, 15.0: 2, 25.0: 3, 34.9: 3, 35.0: 3, 100.0: 3}
    for t, count in expected.items():
        snap = snapshot_at(source, clock, t)
        assert val(snap, "gpu_xid_errors_total", 5, xid="13") == count, t
    assert val(snap, "gpu_xid_errors_total", 6, xid="31") == 1
    assert val(snap, "gpu_xid_errors_total", 1, xid="999") == 1  # an unwatched code appears


def test_nvlink_down_drops_one_link_and_its_share_of_traffic():
    times = [9.0, 10.0, 11.0, 30.0, 54.0, 55.0, 80.0]
    with_it, without = paired("nvlink_down:gpu=4,start=10,duration=45,link=3", times)
    at = dict(zip(times, with_it, strict=True))
    base = dict(zip(times, without, strict=True))
    assert val(at[9.0], "gpu_nvlink_link_up", 4, link="3") == 1
    for t in (10.0, 30.0, 54.0):
        assert val(at[t], "gpu_nvlink_link_up", 4, link="3") == 0
        assert all(
            val(at[t], "gpu_nvlink_link_up", 4, link=str(i)) == 1 for i in range(18) if i != 3
        )
        assert val(at[t], "gpu_nvlink_errors_total", 4, type="crc_flit") > 0
    assert val(at[10.0], "gpu_nvlink_errors_total", 4, type="recovery") == 1
    assert val(at[54.0], "gpu_nvlink_errors_total", 4, type="recovery") == 5  # retrained every 10 s
    assert val(at[80.0], "gpu_nvlink_link_up", 4, link="3") == 1
    assert val(at[80.0], "gpu_nvlink_errors_total", 4, type="recovery") == 5

    def tx(snaps, a, b):
        name = "gpu_nvlink_transmit_bytes_total"
        return val(snaps[b], name, 4) - val(snaps[a], name, 4)

    assert tx(at, 11.0, 54.0) == pytest.approx(tx(base, 11.0, 54.0) * 17 / 18)
    assert tx(at, 55.0, 80.0) == pytest.approx(tx(base, 55.0, 80.0))


def test_ecc_uncorrectable_counts_every_30_seconds_and_holds_a_remap():
    source, clock = fleet("ecc_uncorrectable:gpu=7,start=10,duration=65")
    # t: (uncorrected ECC, Xid 48, remapped uncorrectable rows, remap pending)
    expected = {
        9.0: (0, 0, 0, 0),
        10.0: (1, 1, 1, 1),
        39.0: (1, 1, 1, 1),
        40.0: (2, 1, 1, 1),
        70.0: (3, 1, 1, 1),
        74.9: (3, 1, 1, 1),
        75.0: (3, 1, 1, 0),
        200.0: (3, 1, 1, 0),
    }
    for t, (ecc, xid48, remapped, pending) in expected.items():
        snap = snapshot_at(source, clock, t)
        got = (
            val(snap, "gpu_ecc_errors_total", 7, type="uncorrected"),
            val(snap, "gpu_xid_errors_total", 7, xid="48"),
            val(snap, "gpu_remapped_rows", 7, kind="uncorrectable"),
            val(snap, "gpu_row_remap_pending", 7),
        )
        assert got == (ecc, xid48, remapped, pending), t
        assert val(snap, "gpu_ecc_errors_total", 7, type="corrected") == 0


def test_row_remap_pending_raises_the_flag_and_xid_63():
    source, clock = fleet("row_remap_pending:gpu=6,start=20,duration=30")
    before, during, after = run(source, clock, [19.0, 20.0, 60.0])
    assert val(before, "gpu_row_remap_pending", 6) == 0
    assert val(during, "gpu_row_remap_pending", 6) == 1
    assert val(during, "gpu_remapped_rows", 6, kind="uncorrectable") == 1
    assert val(during, "gpu_xid_errors_total", 6, xid="63") == 1
    assert val(after, "gpu_row_remap_pending", 6) == 0
    assert val(after, "gpu_remapped_rows", 6, kind="uncorrectable") == 1
    assert val(during, "gpu_row_remap_failure", 6) == 0


def test_idle_drops_load_power_and_clocks_and_cools_with_inertia():
    times = [10.0, 12.0, 20.0, 40.0, 70.0, 100.0]
    with_it, without = paired("idle:gpu=2,start=10,duration=90", times)
    temps = [val(s, "gpu_temperature_celsius", 2, sensor="gpu") for s in with_it]
    assert temps == sorted(temps, reverse=True)
    assert temps[1] > 45  # no jump: it cools with inertia
    assert 30 <= temps[4] <= 36  # ... towards ~32 °C
    for snap, normal in zip(with_it[1:5], without[1:5], strict=True):
        assert val(snap, "gpu_utilization_ratio", 2) < 0.05
        assert val(snap, "gpu_clock_event_active", 2, reason="gpu_idle") == 1
        assert val(snap, "gpu_power_watts", 2) < H100.idle_watts + 10
        assert val(snap, "gpu_clock_hertz", 2, clock="sm") == H100.idle_sm_hertz
        # the model stays loaded
        assert val(snap, "gpu_memory_used_bytes", 2) == val(normal, "gpu_memory_used_bytes", 2)
    assert val(with_it[4], "gpu_clock_event_seconds_total", 2, reason="gpu_idle") == 60
    assert val(with_it[5], "gpu_utilization_ratio", 2) == val(
        without[5], "gpu_utilization_ratio", 2
    )


def recovery(snap, gpu: int) -> float | None:
    """gpu_recovery_action of `gpu` (None: no such series, as while the GPU is lost)."""
    found = snap.lookup("gpu_recovery_action", str(gpu))
    return found[0][1] if found else None


def test_the_recovery_action_is_latched_until_the_reset_or_reboot():
    source, clock = fleet(
        "ecc_uncorrectable:gpu=7,start=10,duration=65",  # the reset at 75 clears it
        "gpu_lost:gpu=3,start=10,duration=20",  # answers again at 30, never rebooted
        "gpu_lost:gpu=4,start=10,duration=20,reboot=15",  # answers at 30, rebooted at 45
        "xid:gpu=5,start=10,code=95",  # an Xid alone is a counter: stories add recovery_action
    )
    expected = {  # t: (GPU 7, GPU 3, GPU 4, GPU 5)
        9.0: (0, 0, 0, 0),
        10.0: (1, None, None, 0),
        29.9: (1, None, None, 0),
        30.0: (1, 2, 2, 0),
        44.9: (1, 2, 2, 0),
        45.0: (1, 2, 0, 0),
        74.9: (1, 2, 0, 0),
        75.0: (0, 2, 0, 0),
        600.0: (0, 2, 0, 0),
    }
    for t, want in expected.items():
        snap = snapshot_at(source, clock, t)
        assert tuple(recovery(snap, g) for g in (7, 3, 4, 5)) == want, t
        assert all(recovery(snap, g) == 0 for g in (0, 1, 2, 6)), t
    assert val(snap, "gpu_up", 3) == 1  # it answers: the reboot it needs is the alert


def test_recovery_action_sets_each_action_and_the_most_disruptive_wins():
    source, clock = fleet(
        "recovery_action:gpu=0,start=10,duration=20,action=reset",
        "recovery_action:gpu=1,start=10,duration=20,action=reboot",
        "recovery_action:gpu=2,start=10,duration=20,action=drain_p2p",
        "recovery_action:gpu=3,start=10,duration=20,action=drain_and_reset",
        "recovery_action:gpu=4,start=10,duration=20,action=drain_p2p",
        "recovery_action:gpu=4,start=15,duration=5,action=reset",  # overlaps: reset wins
        "ecc_uncorrectable:gpu=5,start=10,duration=20",
        "recovery_action:gpu=5,start=15,duration=5,action=reboot",  # a reboot resets it too
    )
    at = {t: snapshot_at(source, clock, t) for t in (9.0, 10.0, 16.0, 29.9, 30.0)}
    assert [recovery(at[9.0], g) for g in range(8)] == [0] * 8
    assert [recovery(at[10.0], g) for g in range(8)] == [1, 2, 3, 4, 3, 1, 0, 0]
    assert [recovery(at[16.0], g) for g in range(8)] == [1, 2, 3, 4, 1, 2, 0, 0]
    assert [recovery(at[29.9], g) for g in range(8)] == [1, 2, 3, 4, 3, 1, 0, 0]
    assert [recovery(at[30.0], g) for g in range(8)] == [0] * 8
    assert val(at[16.0], "gpu_up", 1) == 1  # the driver asks; the GPU still answers


def test_gpu_all_is_the_same_fault_on_every_gpu():
    source, clock = fleet(
        "recovery_action:gpu=all,start=5,duration=10,action=reboot",
        "xid:gpu=all,start=5,code=79",
        gpus=4,
    )
    before, during, after = run(source, clock, [4.0, 5.0, 20.0])
    for g in range(4):
        assert (recovery(before, g), recovery(during, g), recovery(after, g)) == (0, 2, 0)
        assert val(after, "gpu_xid_errors_total", g, xid="79") == 1


def test_thermal_flap_is_on_for_its_duty_share_and_hovers_at_the_slowdown_point():
    times = [float(t) for t in range(0, 221)]
    with_it, without = paired("thermal_flap:gpu=2,start=60,duration=160,period=40", times, gpus=3)
    assert_other_gpus_identical(with_it[::30], without[::30], 2)
    secs = [
        val(s, "gpu_clock_event_seconds_total", 2, reason="sw_thermal_slowdown") for s in with_it
    ]
    assert secs[60] == 0
    assert secs[220] - secs[60] == 80  # 50% of 160 s: 20 s on, 20 s off, four times
    for t in range(60, 220):
        on = (t - 60) % 40 < 20
        snap, normal = with_it[t], without[t]
        assert val(snap, "gpu_clock_event_active", 2, reason="sw_thermal_slowdown") == on, t
        assert val(snap, "gpu_clock_event_active", 2, reason="hw_thermal_slowdown") == 0
        sm, sm_normal = (val(x, "gpu_clock_hertz", 2, clock="sm") for x in (snap, normal))
        assert (sm < 0.8 * sm_normal) == on, t  # clocks cut while on, full while off
        if t >= 120:  # settled: the temperature hovers around the slowdown point
            temp = val(snap, "gpu_temperature_celsius", 2, sensor="gpu")
            assert 83.5 <= temp <= 88.5, (t, temp)


def test_power_at_limit_hovers_at_97_to_99_percent_with_the_cap_intermittent():
    times = [float(t) for t in range(0, 131)]
    source, clock = fleet("power_at_limit:gpu=1,start=10,duration=120,period=10,duty=0.3", gpus=2)
    snaps = run(source, clock, times)
    for t in range(10, 130):
        snap = snaps[t]
        limit = val(snap, "gpu_power_limit_watts", 1)
        assert limit == H100.power_limit_watts  # the enforced limit is the TDP: no lowered cap
        share = val(snap, "gpu_power_watts", 1) / limit
        assert 0.97 <= share <= 0.99, (t, share)
        on = (t - 10) % 10 < 3
        assert val(snap, "gpu_clock_event_active", 1, reason="sw_power_cap") == on, t
        assert val(snap, "gpu_utilization_ratio", 1) >= 0.9
    capped = [val(s, "gpu_clock_event_seconds_total", 1, reason="sw_power_cap") for s in snaps]
    assert capped[130] - capped[10] == pytest.approx(0.3 * 120)
    assert max(val(s, "gpu_power_watts", 1) / H100.power_limit_watts for s in snaps[:10]) < 0.97


# --- shared helpers: Xid counters and clock-event reasons ------------------------------------


def test_xid_table_follows_nvidias_resolution_buckets():
    for code in (13, 31, 43, 45, 48, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 119, 120, 140, 154):
        assert XID_CATALOG[code].description
    assert xid_bucket(79) == "RESTART_BM"  # fallen off the bus: reboot the node
    assert xid_bucket(95) == "RESET_GPU" and xid_bucket(94) == "RESTART_APP"
    assert xid_bucket(63) == "IGNORE" and xid_bucket(154) == "XID_154"
    assert xid_bucket(9999) == "CONTACT_SUPPORT"  # not in the catalog
    # every code whose bucket asks more than an application restart is pre-seeded
    for code, info in XID_CATALOG.items():
        if info.bucket in ("RESET_GPU", "RESTART_BM", "XID_154"):
            assert code in WATCHED_XIDS, code
    assert "fallen off the bus" in XID_CATALOG[79].description


def test_xid_counters_pre_seed_every_watched_code_at_zero():
    counters = XidCounters(watched=[48, 79])
    counters.add_gpu(0, "GPU-a")
    counters.add_gpu(1, "GPU-b")
    samples = counters.samples()
    assert [(s.label("gpu"), s.label("xid"), s.value) for s in samples] == [
        ("0", "48", 0),
        ("0", "79", 0),
        ("1", "48", 0),
        ("1", "79", 0),
    ]
    assert all(s.name == "gpu_xid_errors_total" for s in samples)
    assert samples[0].labels == (("gpu", "0"), ("uuid", "GPU-a"), ("xid", "48"))
    counters.record(1, 79)
    counters.record(1, 13, count=2)  # not watched: appears with its first event
    counters.add_gpu(1, "GPU-b")  # registering again keeps the counts
    assert {(s.label("xid"), s.value) for s in counters.samples(1)} == {
        ("48", 0),
        ("79", 1),
        ("13", 2),
    }
    assert counters.count(1, 13) == 2 and counters.count(0, 79) == 0
    with pytest.raises(KeyError, match="GPU 5 is not registered"):
        counters.record(5, 79)
    with pytest.raises(ValueError):
        counters.record(0, 79, count=-1)


def test_xid_counters_are_thread_safe():
    counters = XidCounters()
    counters.add_gpu(0, "GPU-a")
    barrier = threading.Barrier(8)

    def hammer():
        barrier.wait()
        for _ in range(2000):
            counters.record(0, 79)
            counters.samples()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert counters.count(0, 79) == 16000


def test_clock_event_reasons_match_nvml_bits():
    pynvml = pytest.importorskip("pynvml")
    nvml_names = {
        "gpu_idle": "GpuIdle",
        "applications_clocks_setting": "ApplicationsClocksSetting",
        "sw_power_cap": "SwPowerCap",
        "hw_slowdown": "HwSlowdown",
        "sync_boost": "SyncBoost",
        "sw_thermal_slowdown": "SwThermalSlowdown",
        "hw_thermal_slowdown": "HwThermalSlowdown",
        "hw_power_brake_slowdown": "HwPowerBrakeSlowdown",
        "display_clock_setting": "DisplayClockSetting",
    }
    assert set(CLOCK_EVENT_REASONS) == set(nvml_names)
    for name, nvml in nvml_names.items():
        assert CLOCK_EVENT_REASONS[name] == getattr(pynvml, f"nvmlClocksEventReason{nvml}")


def test_reasons_from_bitmask():
    assert reasons_from_bitmask(0) == dict.fromkeys(CLOCK_EVENT_REASONS, False)
    got = reasons_from_bitmask(0x20 | 0x40 | 0x8 | 0x10000)  # an unknown high bit is ignored
    assert {k for k, on in got.items() if on} == {
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_slowdown",
    }
    assert reasons_from_bitmask(0x1FF) == dict.fromkeys(CLOCK_EVENT_REASONS, True)
    assert bitmask_from_reasons(["gpu_idle", "sw_power_cap"]) == 0x5
    for name, bit in CLOCK_EVENT_REASONS.items():
        assert reasons_from_bitmask(bitmask_from_reasons([name])) == {
            k: k == name for k in CLOCK_EVENT_REASONS
        }
        assert bin(bit).count("1") == 1
    with pytest.raises(KeyError, match="unknown clock event reason 'hot'"):
        bitmask_from_reasons(["hot"])
