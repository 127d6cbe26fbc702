"""The NVML source against the fake NVML, through pynvml's real ctypes marshalling."""

import math
import time

import pynvml
import pytest

from exporter import catalog
from exporter.sampler import _validate
from exporter.sources import SourceUnavailable
from exporter.sources.clock_events import CLOCK_EVENT_REASONS
from exporter.sources.nvml import NvmlSource
from exporter.sources.xid import WATCHED_XIDS
from tests.clock import Clock

MIB = 1024 * 1024
TOTAL = 81559 * MIB  # the fake's H100 80GB
RESERVED = 510 * MIB


@pytest.fixture
def make_source(fake_nvml):
    made = []

    def make(config: str = "", **kwargs) -> NvmlSource:
        fake_nvml.configure(config)
        kwargs.setdefault("event_wait_ms", 20)
        source = NvmlSource(**kwargs)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def of_gpu(samples, gpu: str) -> dict:
    """{(name, extra labels): value} of one GPU's samples."""
    out = {}
    for s in samples:
        labels = dict(s.labels)
        if labels.get("gpu") == gpu:
            extra = tuple((k, v) for k, v in s.labels if k not in ("gpu", "uuid"))
            out[(s.name, extra)] = s.value
    return out


def value(samples, gpu: str, name: str, **extra: str) -> float:
    return of_gpu(samples, gpu)[(name, tuple(extra.items()))]


def families(samples, gpu: str) -> set[str]:
    return {name for name, _ in of_gpu(samples, gpu)}


def collect_until(source, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = source.collect()
        if predicate(samples):
            return samples
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


#: What NVML cannot answer on a plain (non-MIG) GPU without --collect.processes.
NOT_FROM_NVML = {
    catalog.GPU_BACKEND_UP.name,  # the sampler's
    catalog.GPU_CLOCK_EVENT_SECONDS.name,  # NVML has no per-reason time counter
    catalog.GPU_MIG_INFO.name,
    catalog.GPU_MIG_MEMORY_USED.name,
    catalog.GPU_MIG_MEMORY_FREE.name,
    catalog.GPU_MIG_MEMORY_TOTAL.name,
    catalog.GPU_PROCESS_MEMORY_USED.name,
    # DCGM's profiling module only:
    catalog.GPU_SM_ACTIVE.name,
    catalog.GPU_SM_OCCUPANCY.name,
    catalog.GPU_TENSOR_ACTIVE.name,
    catalog.GPU_DRAM_ACTIVE.name,
    catalog.GPU_PCIE_TRANSMIT.name,
    catalog.GPU_PCIE_RECEIVE.name,
}


def test_every_gpu_family_nvml_answers_is_exported_in_base_units(make_source):
    source = make_source(
        "gpus 2\n"
        "gpu 0 utilization 73\n"
        "gpu 0 reasons 0x24\n"
        "gpu 0 pcie_replay 3\n"
        "gpu 0 remap 2 1 1 0\n"
        "gpu 0 ecc corrected 5\n"
        "gpu 0 ecc uncorrected 1\n"
        "gpu 0 nvlink_error replay 4\n"
        "gpu 0 nvlink_error crc_flit 9\n"
    )
    samples = source.collect()
    _validate(samples)  # what the sampler checks: catalog families, labels, no duplicates
    assert not [s for s in samples if math.isnan(s.value)]
    expected = {
        name for name in catalog.FAMILIES if name.startswith("gpu_") and name not in NOT_FROM_NVML
    }
    assert families(samples, "0") == expected
    assert families(samples, "1") == expected

    v = lambda name, **extra: value(samples, "0", name, **extra)  # noqa: E731
    info = [dict(s.labels) for s in samples if s.name == "gpu_info" and s.label("gpu") == "0"]
    assert info == [
        {
            "gpu": "0",
            "uuid": "GPU-fa4e0000-0000-4000-8000-000000000000",
            "name": "NVIDIA H100 80GB HBM3",
            "pci_bus_id": "00000000:18:00.0",
            "driver_version": "550.90.07",
            "cuda_version": "12.4",
            "backend": "nvml",
        }
    ]
    assert v("gpu_up") == 1
    assert v("gpu_utilization_ratio") == pytest.approx(0.73)
    assert v("gpu_memory_copy_utilization_ratio") == pytest.approx(0.29)  # the fake: 2/5 of it
    assert v("gpu_power_watts") == pytest.approx((90_000 + 6_000 * 73) / 1000)  # mW -> W
    assert v("gpu_power_limit_watts") == 700
    assert v("gpu_temperature_celsius", sensor="gpu") == 35 + 73 // 3
    assert v("gpu_temperature_celsius", sensor="memory") == 35 + 73 // 3 + 6
    assert v("gpu_clock_hertz", clock="sm") == 1980e6  # MHz -> Hz
    assert v("gpu_clock_hertz", clock="memory") == 2619e6
    assert v("gpu_clock_max_hertz", clock="video") == 1755e6
    assert v("gpu_energy_joules_total") > 1000  # mJ -> J: the fake starts GPU 0 at 1e6 mJ
    for reason, bit in CLOCK_EVENT_REASONS.items():
        assert v("gpu_clock_event_active", reason=reason) == (1 if bit & 0x24 else 0), reason
    assert v("gpu_pcie_replays_total") == 3
    assert v("gpu_remapped_rows", kind="correctable") == 2
    assert v("gpu_remapped_rows", kind="uncorrectable") == 1
    assert v("gpu_row_remap_pending") == 1
    assert v("gpu_row_remap_failure") == 0
    assert v("gpu_ecc_errors_total", type="corrected") == 5
    assert v("gpu_ecc_errors_total", type="uncorrected") == 1
    assert v("gpu_nvlink_errors_total", type="replay") == 4
    assert v("gpu_nvlink_errors_total", type="crc_flit") == 9
    assert v("gpu_nvlink_errors_total", type="crc_data") == 0
    links = {e[0][1] for (n, e) in of_gpu(samples, "0") if n == "gpu_nvlink_link_up"}
    assert links == {str(i) for i in range(18)}
    assert v("gpu_nvlink_transmit_bytes_total") > 0
    assert v("gpu_nvlink_transmit_bytes_total") % 1024 == 0  # KiB counters -> bytes
    for xid in WATCHED_XIDS:  # pre-seeded, so increase() sees the first event
        assert v("gpu_xid_errors_total", xid=str(xid)) == 0


def test_memory_follows_the_v2_semantics_total_is_used_free_and_reserved(make_source):
    samples = make_source("gpus 1").collect()
    used = value(samples, "0", "gpu_memory_used_bytes")
    free = value(samples, "0", "gpu_memory_free_bytes")
    reserved = value(samples, "0", "gpu_memory_reserved_bytes")
    assert value(samples, "0", "gpu_memory_total_bytes") == TOTAL == used + free + reserved
    assert reserved == RESERVED
    assert used == 20 * 1024 * MIB  # what processes allocated, without the reservation


def test_not_supported_is_decided_once_at_start_and_the_family_is_absent(make_source, fake_nvml):
    source = make_source(
        "gpus 2\ngpu 1 unsupported power,remapped_rows,memory_temperature,video_clock,ecc"
    )
    for _ in range(3):
        samples = source.collect()
    fams = families(samples, "1")
    assert {"gpu_power_watts", "gpu_remapped_rows", "gpu_row_remap_pending"}.isdisjoint(fams)
    assert "gpu_ecc_errors_total" not in fams
    assert ("gpu_temperature_celsius", (("sensor", "memory"),)) not in of_gpu(samples, "1")
    assert ("gpu_clock_hertz", (("clock", "video"),)) not in of_gpu(samples, "1")
    assert ("gpu_clock_hertz", (("clock", "sm"),)) in of_gpu(samples, "1")
    assert {"gpu_power_watts", "gpu_remapped_rows", "gpu_ecc_errors_total"} <= families(
        samples, "0"
    )
    # Asked once at the probe, never again; the GPU that has them is asked every cycle.
    assert fake_nvml.calls("nvmlDeviceGetPowerUsage", 1) == 1
    assert fake_nvml.calls("nvmlDeviceGetRemappedRows", 1) == 1
    assert fake_nvml.calls("nvmlDeviceGetPowerUsage", 0) == 4  # probe + 3 cycles
    assert source.unsupported()[1] == [
        "gpu_power_watts",
        "gpu_clock_hertz{clock=video}",
        "gpu_clock_max_hertz{clock=video}",
        "gpu_remapped_rows",
        "gpu_row_remap_pending",
        "gpu_row_remap_failure",
        "gpu_temperature_celsius{sensor=memory}",
        "gpu_ecc_errors_total{type=corrected}",
        "gpu_ecc_errors_total{type=uncorrected}",
    ]
    assert source.unsupported()[0] == []
    assert not [s for s in samples if math.isnan(s.value)]


def test_the_recovery_action_follows_the_driver_and_is_absent_where_it_has_none(
    make_source, fake_nvml
):
    source = make_source("gpus 3\ngpu 1 recovery_action 2\ngpu 2 recovery_action unsupported")
    samples = source.collect()
    assert value(samples, "0", "gpu_recovery_action") == 0  # none
    assert value(samples, "1", "gpu_recovery_action") == 2  # node reboot
    assert "gpu_recovery_action" not in families(samples, "2")  # a driver before R565
    assert source.unsupported()[2] == ["gpu_recovery_action"]
    assert source.unsupported()[1] == []
    assert "gpu_ecc_errors_total" in families(samples, "2")  # the other fields of the call stay
    # The driver holds the action until someone acts; the reboot (here: the fake) clears it.
    fake_nvml.command("gpu 1 recovery_action 0\ngpu 0 recovery_action 4\ngpu 2 recovery_action 1")
    samples = source.collect()
    assert value(samples, "1", "gpu_recovery_action") == 0
    assert value(samples, "0", "gpu_recovery_action") == 4  # drain and reset
    assert "gpu_recovery_action" not in families(samples, "2")  # decided at the probe


def test_a_board_without_nvlink_exports_no_nvlink_family(make_source):
    samples = make_source("gpus 1\nnvlinks 0").collect()
    assert not [f for f in families(samples, "0") if f.startswith("gpu_nvlink")]


def test_mig_devices_are_exported_with_their_instances_and_unsupported_fields_skipped(
    make_source,
):
    source = make_source(
        "gpus 2\ngpu 1 mig 3\ngpu 1 process 500 vllm 2147483648 2\ngpu 1 process 501 x 1024 3"
    )
    samples = source.collect()
    _validate(samples)
    mig = of_gpu(samples, "1")
    for gi in ("1", "2", "3"):
        ids = (("gpu_instance", gi), ("compute_instance", "0"))
        assert mig[("gpu_mig_memory_total_bytes", ids)] == 9856 * MIB
        used = mig[("gpu_mig_memory_used_bytes", ids)]
        assert used + mig[("gpu_mig_memory_free_bytes", ids)] == 9856 * MIB
    gi2 = (("gpu_instance", "2"), ("compute_instance", "0"))
    assert mig[("gpu_mig_memory_used_bytes", gi2)] == 13 * MIB + 2147483648
    infos = [dict(s.labels) for s in samples if s.name == "gpu_mig_info"]
    assert {(i["gpu_instance"], i["mig_uuid"]) for i in infos} == {
        ("1", "MIG-fa4e0001-0000-4000-8000-000000000000"),
        ("2", "MIG-fa4e0001-0001-4000-8000-000000000001"),
        ("3", "MIG-fa4e0001-0002-4000-8000-000000000002"),
    }
    assert all(i["name"].endswith("MIG 1g.10gb") and i["gpu"] == "1" for i in infos)
    # NVML does not give utilization in MIG mode: absent, not 0
    assert "gpu_utilization_ratio" not in families(samples, "1")
    assert "gpu_utilization_ratio" in source.unsupported()[1]
    assert "gpu_memory_used_bytes" in families(samples, "1")  # the parent's totals stay
    assert not [f for f in families(samples, "0") if f.startswith("gpu_mig")]


def test_mig_instances_created_and_mig_mode_switched_at_run_time(make_source, fake_nvml):
    source = make_source("gpus 2\ngpu 1 mig 1")
    source.collect()
    fake_nvml.command("gpu 1 mig 4\ngpu 0 mig 2")
    samples = source.collect()
    assert len([s for s in samples if s.name == "gpu_mig_info" and s.label("gpu") == "1"]) == 4
    assert len([s for s in samples if s.name == "gpu_mig_info" and s.label("gpu") == "0"]) == 2
    assert "gpu_utilization_ratio" not in families(samples, "0")  # probed again in MIG mode


def test_a_lost_gpu_is_down_alone_and_comes_back_after_a_reinitialisation(make_source, fake_nvml):
    clock = Clock()
    source = make_source("gpus 4", clock=clock)
    before = source.collect()
    fake_nvml.command("gpu 2 lost")
    lost = source.collect()
    assert families(lost, "2") == {"gpu_info", "gpu_up", "gpu_xid_errors_total"}
    assert value(lost, "2", "gpu_up") == 0
    for gpu in ("0", "1", "3"):
        assert value(lost, gpu, "gpu_up") == 1
        assert len(of_gpu(lost, gpu)) == len(of_gpu(before, gpu))
    assert fake_nvml.init_count() == 1

    # Re-initialised with backoff: 1 s, then 2 s, then 4 s...
    for wait, inits in ((0.5, 1), (0.6, 2), (1.0, 2), (1.1, 3), (3.9, 3), (0.1, 4)):
        clock.advance(wait)
        samples = source.collect()
        assert fake_nvml.init_count() == inits, (wait, inits)
        assert value(samples, "2", "gpu_up") == 0
        assert value(samples, "0", "gpu_up") == 1
    fake_nvml.command("gpu 2 recover")
    clock.advance(4.0)
    assert value(source.collect(), "2", "gpu_up") == 0  # the next try is 8 s after the last
    clock.advance(4.1)
    back = source.collect()
    assert fake_nvml.init_count() == 5
    assert value(back, "2", "gpu_up") == 1
    assert families(back, "2") == families(before, "2")
    assert all(value(back, g, "gpu_up") == 1 for g in ("0", "1", "3"))
    # its Xid events are watched again after the re-initialisation
    fake_nvml.command("gpu 2 xid 79")
    collect_until(source, lambda s: value(s, "2", "gpu_xid_errors_total", xid="79") == 1)


def test_an_unknown_error_on_one_gpu_counts_as_lost(make_source, fake_nvml):
    source = make_source("gpus 2")
    source.collect()
    fake_nvml.command("gpu 1 unknown")
    samples = source.collect()
    assert value(samples, "1", "gpu_up") == 0
    assert value(samples, "0", "gpu_up") == 1


def test_a_gpu_lost_at_start_is_down_without_a_uuid_until_found(make_source, fake_nvml):
    clock = Clock()
    source = make_source("gpus 2\ngpu 1 lost", clock=clock)
    samples = source.collect()
    assert value(samples, "1", "gpu_up") == 0
    assert families(samples, "1") == {"gpu_info", "gpu_up"}  # no Xid series: never registered
    assert [s.label("uuid") for s in samples if s.name == "gpu_up" and s.label("gpu") == "1"] == [
        ""
    ]
    fake_nvml.command("gpu 1 recover")
    clock.advance(1.0)
    samples = source.collect()
    assert value(samples, "1", "gpu_up") == 1
    assert {s.label("uuid") for s in samples if s.label("gpu") == "1"} == {
        "GPU-fa4e0001-0000-4000-8000-000000000001"
    }


def test_two_xid_79_events_count_2_on_that_gpu_only(make_source, fake_nvml):
    source = make_source("gpus 3")
    source.collect()
    fake_nvml.command("gpu 1 xid 79\ngpu 1 xid 79")
    samples = collect_until(source, lambda s: value(s, "1", "gpu_xid_errors_total", xid="79") == 2)
    assert value(samples, "0", "gpu_xid_errors_total", xid="79") == 0
    assert value(samples, "2", "gpu_xid_errors_total", xid="79") == 0
    fake_nvml.command("gpu 0 xid 109")  # a code nobody watches still gets its series
    collect_until(source, lambda s: ("gpu_xid_errors_total", (("xid", "109"),)) in of_gpu(s, "0"))


@pytest.mark.parametrize("state_field", [True, False], ids=["states-by-field", "states-per-link"])
def test_nvlink_counters_only_grow_and_a_link_that_goes_down_is_0(
    make_source, fake_nvml, state_field
):
    older = "" if state_field else "\ngpu 0 unsupported nvlink_state_field"
    source = make_source(f"gpus 1\ngpu 0 link 5 down{older}")
    first = source.collect()
    per_link_calls = fake_nvml.calls("nvmlDeviceGetNvLinkState")
    assert ("gpu_nvlink_link_up", (("link", "5"),)) not in of_gpu(first, "0")  # never active
    fake_nvml.command("gpu 0 link 5 up")
    tx = [value(first, "0", "gpu_nvlink_transmit_bytes_total")]
    rx = [value(first, "0", "gpu_nvlink_receive_bytes_total")]
    for step in range(4):
        time.sleep(0.03)
        if step == 2:
            fake_nvml.command("gpu 0 link 3 down")
        samples = source.collect()
        tx.append(value(samples, "0", "gpu_nvlink_transmit_bytes_total"))
        rx.append(value(samples, "0", "gpu_nvlink_receive_bytes_total"))
    assert tx == sorted(tx) and tx[-1] > tx[0]
    assert rx == sorted(rx) and rx[-1] > rx[0]
    assert value(samples, "0", "gpu_nvlink_link_up", link="3") == 0
    assert value(samples, "0", "gpu_nvlink_link_up", link="5") == 1
    # a driver with the state field answers every link in the one field call each cycle
    per_cycle = (fake_nvml.calls("nvmlDeviceGetNvLinkState") - per_link_calls) / 4
    assert per_cycle == (0 if state_field else 18)


def test_collect_never_calls_the_blocking_pcie_throughput(make_source, fake_nvml):
    source = make_source("gpus 2", collect_processes=True)
    for _ in range(3):
        source.collect()
    assert fake_nvml.calls("nvmlDeviceGetFieldValues") > 0
    assert fake_nvml.calls("nvmlDeviceGetPcieThroughput") == 0


def test_process_memory_is_opt_in_and_summed_per_pid(make_source, fake_nvml):
    config = (
        "gpus 2\n"
        "gpu 0 process 4242 python3 1073741824\n"
        "gpu 0 process 4243 /opt/tritonserver/bin/tritonserver 2147483648\n"
        "gpu 1 mig 2\n"
        "gpu 1 process 77 vllm 1000 1\n"
        "gpu 1 process 77 vllm 500 2\n"
    )
    plain = make_source(config).collect()
    assert "gpu_process_memory_used_bytes" not in {s.name for s in plain}
    assert fake_nvml.calls("nvmlDeviceGetComputeRunningProcesses_v3") == 0

    samples = make_source(config, collect_processes=True).collect()
    _validate(samples)
    procs = {
        (s.label("gpu"), s.label("pid"), s.label("process")): s.value
        for s in samples
        if s.name == "gpu_process_memory_used_bytes"
    }
    assert procs == {
        ("0", "4242", "python3"): 1073741824,
        ("0", "4243", "tritonserver"): 2147483648,
        ("1", "77", "vllm"): 1500,
    }


def test_without_a_driver_the_source_is_unavailable_and_retries_with_backoff(
    make_source, fake_nvml
):
    clock = Clock()
    source = make_source("driver_loaded 0", clock=clock)
    with pytest.raises(SourceUnavailable, match="NVIDIA kernel driver is not loaded"):
        source.collect()
    for _ in range(3):  # within the backoff: fail fast, NVML left alone
        with pytest.raises(SourceUnavailable, match="not loaded"):
            source.collect()
    assert fake_nvml.calls("nvmlInitWithFlags") == 1
    clock.advance(1.0)
    with pytest.raises(SourceUnavailable):
        source.collect()
    assert fake_nvml.calls("nvmlInitWithFlags") == 2
    fake_nvml.command("driver_loaded 1")
    clock.advance(1.0)
    with pytest.raises(SourceUnavailable):  # the next try is 2 s after the last
        source.collect()
    clock.advance(1.0)
    assert value(source.collect(), "0", "gpu_up") == 1


def test_without_the_library_the_source_says_so_in_one_line(monkeypatch):
    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "CDLL", no_library)
    source = NvmlSource()
    with pytest.raises(SourceUnavailable) as err:
        source.collect()
    message = str(err.value)
    assert "libnvidia-ml.so.1 not found" in message and "\n" not in message
    source.close()


def test_close_shuts_nvml_down_and_stops_the_event_thread(make_source, fake_nvml):
    import threading

    source = make_source("gpus 2")
    source.collect()
    assert any(t.name == "nvml-xid-events" for t in threading.enumerate())
    source.close()
    assert not any(t.name == "nvml-xid-events" for t in threading.enumerate())
    assert fake_nvml.calls("nvmlShutdown") == 1
    assert fake_nvml.calls("nvmlEventSetFree") == 1


def test_process_churn_leaves_nothing_behind(make_source, fake_nvml):
    source = make_source("gpus 1\ngpu 0 process 100 a 1024", collect_processes=True)
    source.collect()
    kept = len(source.gpus[0].series)
    for pid in range(101, 141):  # short-lived processes, each with its own pid
        fake_nvml.command(f"gpu 0 clear_processes\ngpu 0 process {pid} job{pid} 2048")
        samples = source.collect()
    procs = [s for s in samples if s.name == "gpu_process_memory_used_bytes"]
    assert [(s.label("pid"), s.label("process")) for s in procs] == [("140", "job140")]
    assert len(source.gpus[0].series) == kept  # no label set per pid piles up


def test_a_driver_without_field_values_loses_only_the_field_families(make_source):
    samples = make_source("gpus 1\ngpu 0 unsupported field_values").collect()
    fams = families(samples, "0")
    assert "gpu_nvlink_link_up" in fams and "gpu_power_watts" in fams
    lost = {
        "gpu_ecc_errors_total",
        "gpu_nvlink_errors_total",
        "gpu_nvlink_transmit_bytes_total",
        "gpu_nvlink_receive_bytes_total",
    }
    assert lost.isdisjoint(fams)
    assert ("gpu_temperature_celsius", (("sensor", "memory"),)) not in of_gpu(samples, "0")
