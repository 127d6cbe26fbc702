"""The DCGM source against the fake DCGM bindings (tests/fake_dcgm), in this process."""

import logging
import math
import warnings
from types import SimpleNamespace

import pytest

from exporter.sampler import _validate
from exporter.sources import SourceUnavailable
from exporter.sources.clock_events import CLOCK_EVENT_REASONS
from exporter.sources.dcgm import PROVIDES, DcgmSource
from exporter.sources.dcgm import fields as F
from exporter.sources.dcgm.counters import RateCounter
from exporter.sources.dcgm.values import FP64_BLANK, INT64_BLANK, number
from exporter.sources.xid import WATCHED_XIDS
from tests.clock import Clock

MIB = 1024 * 1024
PROFILING_FAMILIES = {
    "gpu_sm_active_ratio",
    "gpu_sm_occupancy_ratio",
    "gpu_tensor_active_ratio",
    "gpu_dram_active_ratio",
    "gpu_pcie_transmit_bytes_total",
    "gpu_pcie_receive_bytes_total",
}


@pytest.fixture
def clock(fake_dcgm) -> Clock:
    c = Clock(1_700_000_000.0)
    fake_dcgm.set_clock(c)
    return c


@pytest.fixture
def make_source(fake_dcgm, clock):
    made = []

    def make(config: str = "", **kwargs) -> DcgmSource:
        fake_dcgm.configure(config)
        fake_dcgm.set_clock(clock)
        kwargs.setdefault("clock", clock)
        source = DcgmSource(**kwargs)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


def of_gpu(samples, gpu: str) -> dict:
    """{(name, extra labels): value} of one GPU's samples."""
    out = {}
    for s in samples:
        if s.label("gpu") == gpu:
            extra = tuple((k, v) for k, v in s.labels if k not in ("gpu", "uuid"))
            out[(s.name, extra)] = s.value
    return out


def value(samples, gpu: str, name: str, **extra: str) -> float:
    return of_gpu(samples, gpu)[(name, tuple(extra.items()))]


def families(samples, gpu: str | None = None) -> set[str]:
    return {s.name for s in samples if gpu is None or s.label("gpu") == gpu}


def test_every_family_it_declares_is_exported_in_base_units(make_source):
    source = make_source(
        "gpus 2\n"
        "gpu 0 utilization 73\n"
        "gpu 0 reasons 0x24\n"
        "gpu 0 pcie_replay 3\n"
        "gpu 0 remap 2 1 1 0\n"
        "gpu 0 ecc_sbe 5\n"
        "gpu 0 ecc_dbe 1\n"
        "gpu 0 replay 4\n"
        "gpu 0 crc_flit 9\n"
    )
    samples = source.collect()
    _validate(samples)  # catalog families, label order, no duplicate series
    assert not [s for s in samples if math.isnan(s.value) or s.value >= 2**47]
    assert families(samples, "0") == set(PROVIDES) == families(samples, "1")
    info = [dict(s.labels) for s in samples if s.name == "gpu_info" and s.label("gpu") == "0"]
    assert info == [
        {
            "gpu": "0",
            "uuid": "GPU-dc6e0000-0000-4000-8000-000000000000",
            "name": "NVIDIA H100 80GB HBM3",
            "pci_bus_id": "00000000:18:00.0",
            "driver_version": "550.90.07",
            "cuda_version": "",
            "backend": "dcgm",
        }
    ]
    v = lambda name, **extra: value(samples, "0", name, **extra)  # noqa: E731
    assert v("gpu_up") == 1
    assert v("gpu_utilization_ratio") == pytest.approx(0.73)  # percent -> ratio
    assert v("gpu_memory_copy_utilization_ratio") == pytest.approx(0.29)
    assert v("gpu_memory_total_bytes") == 81559 * MIB  # MiB -> bytes
    assert v("gpu_memory_reserved_bytes") == 510 * MIB
    used, free = v("gpu_memory_used_bytes"), v("gpu_memory_free_bytes")
    assert used + free + 510 * MIB == 81559 * MIB  # the same split as NVML's v2 memory
    assert v("gpu_power_watts") == pytest.approx(90 + 6 * 73)
    assert v("gpu_power_limit_watts") == 700
    assert v("gpu_temperature_celsius", sensor="gpu") == 35 + 73 // 3
    assert v("gpu_temperature_celsius", sensor="memory") == 35 + 73 // 3 + 6
    assert v("gpu_clock_hertz", clock="sm") == 1980e6  # MHz -> Hz
    assert v("gpu_clock_max_hertz", clock="memory") == 2619e6
    assert ("gpu_clock_hertz", (("clock", "graphics"),)) not in of_gpu(samples, "0")
    assert v("gpu_energy_joules_total") == pytest.approx(1000.0)  # 1e6 mJ at start -> J
    for reason, bit in CLOCK_EVENT_REASONS.items():
        assert v("gpu_clock_event_active", reason=reason) == (1 if bit & 0x24 else 0), reason
    assert v("gpu_pcie_replays_total") == 3
    assert v("gpu_remapped_rows", kind="correctable") == 2
    assert v("gpu_remapped_rows", kind="uncorrectable") == 1
    assert v("gpu_row_remap_pending") == 1 and v("gpu_row_remap_failure") == 0
    assert v("gpu_ecc_errors_total", type="corrected") == 5
    assert v("gpu_ecc_errors_total", type="uncorrected") == 1
    assert v("gpu_nvlink_errors_total", type="replay") == 4
    assert v("gpu_nvlink_errors_total", type="crc_flit") == 9
    links = {e[0][1] for (n, e) in of_gpu(samples, "0") if n == "gpu_nvlink_link_up"}
    assert links == {str(i) for i in range(18)}
    assert v("gpu_sm_active_ratio") == pytest.approx(0.73 * 0.8)
    assert v("gpu_sm_occupancy_ratio") == pytest.approx(0.73 * 0.35)
    assert v("gpu_tensor_active_ratio") == pytest.approx(0.73 * 0.45)
    assert v("gpu_dram_active_ratio") == pytest.approx(0.73 * 0.3)
    xids = {e[0][1] for (n, e) in of_gpu(samples, "0") if n == "gpu_xid_errors_total"}
    assert xids == {str(code) for code in WATCHED_XIDS}  # pre-seeded at 0


def test_byte_counters_integrate_dcgm_rates_by_sample_timestamp(make_source, clock):
    source = make_source("gpus 1\ngpu 0 utilization 50\n")
    first = source.collect()  # the first sample starts the count
    assert value(first, "0", "gpu_pcie_transmit_bytes_total") == 0
    clock.advance(1.0)
    second = source.collect()
    assert value(second, "0", "gpu_pcie_transmit_bytes_total") == pytest.approx(50 * 10e6)
    assert value(second, "0", "gpu_pcie_receive_bytes_total") == pytest.approx(50 * 12e6)
    assert value(second, "0", "gpu_nvlink_transmit_bytes_total") == pytest.approx(50e9)
    # The same DCGM sample read again (collection faster than the watch) adds nothing.
    again = source.collect()
    assert value(again, "0", "gpu_pcie_transmit_bytes_total") == pytest.approx(50 * 10e6)
    clock.advance(3.0)  # three periods late: the latest rate stands for the gap
    late = source.collect()
    assert value(late, "0", "gpu_pcie_transmit_bytes_total") == pytest.approx(4 * 50 * 10e6)


@pytest.mark.parametrize("kind", ["blank", "not_found", "not_supported", "no_permission"])
def test_blank_sentinels_are_absent_series_never_numbers(make_source, kind, caplog):
    caplog.set_level(logging.INFO, logger="exporter.sources.dcgm")
    # 155 power (double), 140 memory temperature and 253 reserved (int64), 112 clock reasons.
    source = make_source(f"gpus 2\ngpu 1 blank 155,140,253,112,1002 {kind}\n")
    for _ in range(3):
        samples = source.collect()
    _validate(samples)
    assert not [s for s in samples if s.value >= 2**47]
    gpu1 = of_gpu(samples, "1")
    absent = {
        ("gpu_power_watts", ()),
        ("gpu_temperature_celsius", (("sensor", "memory"),)),
        ("gpu_memory_reserved_bytes", ()),
        ("gpu_sm_active_ratio", ()),
    }
    assert not absent & set(gpu1)
    assert not {n for n, _ in gpu1} & {"gpu_clock_event_active"}
    assert gpu1[("gpu_up", ())] == 1
    assert gpu1[("gpu_temperature_celsius", (("sensor", "gpu"),))] > 0
    assert absent <= set(of_gpu(samples, "0"))  # GPU 0 has them all
    said = [r.getMessage() for r in caplog.records if "no value from DCGM here" in r.getMessage()]
    words = kind.replace("_", " ") if kind != "no_permission" else "no permission"
    assert said == [
        "GPU 1 (NVIDIA H100 80GB HBM3, GPU-dc6e0001-0000-4000-8000-000000000000): no value "
        f"from DCGM here, absent: gpu_memory_reserved_bytes ({words}), "
        f"gpu_temperature_celsius{{sensor=memory}} ({words}), gpu_power_watts ({words}), "
        "gpu_clock_event_active"
    ]


def test_the_recovery_action_is_read_each_cycle_and_a_blank_is_absent(
    make_source, fake_dcgm, caplog
):
    caplog.set_level(logging.INFO, logger="exporter.sources.dcgm")
    source = make_source("gpus 3\ngpu 1 recovery_action 2\ngpu 2 blank 1523 not_supported\n")
    samples = source.collect()
    assert value(samples, "0", "gpu_recovery_action") == 0  # none
    assert value(samples, "1", "gpu_recovery_action") == 2  # node reboot
    assert "gpu_recovery_action" not in families(samples, "2")
    said = [r.getMessage() for r in caplog.records if "no value from DCGM here" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("absent: gpu_recovery_action (not supported)")
    # Latched by the driver until the reboot; DCGM's blanks are read afresh every cycle.
    fake_dcgm.command("gpu 1 recovery_action 0\ngpu 2 unblank 1523\ngpu 2 recovery_action 1")
    samples = source.collect()
    assert value(samples, "1", "gpu_recovery_action") == 0
    assert value(samples, "2", "gpu_recovery_action") == 1  # GPU reset


def test_a_hostengine_older_than_the_recovery_action_costs_only_that_family(make_source, caplog):
    caplog.set_level(logging.INFO, logger="exporter.sources.dcgm")
    source = make_source("gpus 2\nhostengine unknown 1523\n")
    for _ in range(3):
        samples = source.collect()
    assert (
        families(samples, "0") == families(samples, "1") == set(PROVIDES) - {"gpu_recovery_action"}
    )
    refused = [r for r in caplog.records if "refused the fields newer than it" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING
    assert "(recovery_action)" in refused[0].getMessage()
    said = [r.getMessage() for r in caplog.records if "no value from DCGM here" in r.getMessage()]
    assert len(said) == 2 and all(m.endswith("gpu_recovery_action (not watched)") for m in said)


def test_the_gpu_label_is_the_nvml_index_so_both_backends_agree(make_source):
    source = make_source("gpus 2\ngpu 0 nvml_index 1\ngpu 1 nvml_index 0\n")
    samples = source.collect()
    uuid_of = {s.label("gpu"): s.label("uuid") for s in samples if s.name == "gpu_info"}
    assert uuid_of == {
        "1": "GPU-dc6e0000-0000-4000-8000-000000000000",
        "0": "GPU-dc6e0001-0000-4000-8000-000000000000",
    }


def test_a_pcie_board_has_no_nvlink_series(make_source):
    samples = make_source("gpus 1\nnvlinks 0\n").collect()
    assert not {n for n in families(samples) if n.startswith("gpu_nvlink_")}
    assert "gpu_pcie_transmit_bytes_total" in families(samples)


def test_xid_last_value_becomes_counted_events(make_source, clock, fake_dcgm):
    source = make_source("gpus 2\ngpu 0 xid 13\n")  # an Xid from before the exporter started
    first = source.collect()
    assert value(first, "0", "gpu_xid_errors_total", xid="13") == 0  # the starting point
    clock.advance(1.0)
    source.collect()
    engine = fake_dcgm.engine
    engine.command("gpu 0 xid 79")
    clock.advance(1.0)
    engine.command("gpu 0 xid 79")  # the same code again, later: a second event
    samples = source.collect()  # both happened since the last reading: only the last is seen
    assert value(samples, "0", "gpu_xid_errors_total", xid="79") == 1
    clock.advance(1.0)
    samples = source.collect()  # the same sample read again counts nothing
    assert value(samples, "0", "gpu_xid_errors_total", xid="79") == 1
    engine.command("gpu 0 xid 79\ngpu 1 xid 94")
    clock.advance(1.0)
    samples = source.collect()
    assert value(samples, "0", "gpu_xid_errors_total", xid="79") == 2
    assert value(samples, "1", "gpu_xid_errors_total", xid="94") == 1
    assert value(samples, "0", "gpu_xid_errors_total", xid="13") == 0
    engine.command("gpu 1 xid 4242")  # not a watched code: its series appears when it happens
    clock.advance(1.0)
    assert value(source.collect(), "1", "gpu_xid_errors_total", xid="4242") == 1


def test_a_lost_gpu_is_gpu_up_0_while_the_others_carry_on(make_source, clock, fake_dcgm, caplog):
    caplog.set_level(logging.WARNING, logger="exporter.sources.dcgm")
    source = make_source("gpus 3\n")
    source.collect()
    engine = fake_dcgm.engine
    engine.command("gpu 1 xid 79\ngpu 1 lost")  # fell off the bus
    for _ in range(3):
        clock.advance(1.0)
        samples = source.collect()
    assert families(samples, "1") == {"gpu_info", "gpu_up", "gpu_xid_errors_total"}
    assert value(samples, "1", "gpu_up") == 0
    assert value(samples, "1", "gpu_xid_errors_total", xid="79") == 1  # counted while lost
    assert value(samples, "0", "gpu_up") == value(samples, "2", "gpu_up") == 1
    assert "gpu_power_watts" in families(samples, "2")
    engine.command("gpu 1 recover")
    clock.advance(1.0)
    back = source.collect()
    assert value(back, "1", "gpu_up") == 1 and "gpu_power_watts" in families(back, "1")
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "GPU 1 (" in m and " lost in DCGM" in m]) == 1
    assert len([m for m in messages if "GPU 1 (" in m and "answers again" in m]) == 1


def test_a_hostengine_that_goes_away_is_a_down_source_that_reconnects_with_backoff(
    make_source, clock, fake_dcgm, caplog
):
    caplog.set_level(logging.INFO, logger="exporter.sources.dcgm")
    source = make_source("gpus 2\ngpu 0 utilization 40\ngpu 1 xid 79\n", retry_initial=1.0)
    source.collect()
    fake_dcgm.command("gpu 1 xid 79")
    clock.advance(1.0)
    before = source.collect()
    assert value(before, "1", "gpu_xid_errors_total", xid="79") == 1
    pcie_before = value(before, "0", "gpu_pcie_transmit_bytes_total")

    fake_dcgm.command("hostengine down")
    with pytest.raises(SourceUnavailable, match="lost the connection to hostengine"):
        source.collect()
    connects = fake_dcgm.calls("dcgmConnect_v2")
    with pytest.raises(SourceUnavailable, match="lost the connection"):
        source.collect()  # within the backoff: DCGM is not asked
    assert fake_dcgm.calls("dcgmConnect_v2") == connects
    clock.advance(1.5)
    with pytest.raises(SourceUnavailable, match="no DCGM hostengine answers at localhost:5555"):
        source.collect()
    assert fake_dcgm.calls("dcgmConnect_v2") == connects + 1

    fake_dcgm.command("hostengine up")  # a new hostengine: our field groups are gone
    assert fake_dcgm.engine.field_groups == {}
    with pytest.raises(SourceUnavailable):
        source.collect()  # still backing off (2 s after the second failure)
    clock.advance(2.5)
    after = source.collect()
    assert source.connects == 2
    groups = sorted(name.rsplit("-", 1)[1] for _, name, _ in fake_dcgm.engine.field_groups.values())
    assert groups == ["basic", "profiling", "recent"]  # made again
    assert value(after, "0", "gpu_up") == 1
    assert value(after, "1", "gpu_xid_errors_total", xid="79") == 1  # counts carry on
    clock.advance(1.0)
    later = source.collect()
    assert value(later, "0", "gpu_pcie_transmit_bytes_total") > pcie_before  # never goes back
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("reconnected to hostengine localhost:5555") for m in messages)


@pytest.mark.parametrize(
    "mode,why",
    [
        ("requires_root", "needs the hostengine to run as root"),
        ("not_supported", "does not support DCGM profiling metrics"),
        ("module_not_loaded", "profiling module could not be loaded"),
        ("in_use", "another profiler holds the GPU's counters"),
    ],
)
def test_a_profiling_module_that_refuses_costs_only_the_profiling_families(
    make_source, clock, fake_dcgm, caplog, mode, why
):
    caplog.set_level(logging.WARNING, logger="exporter.sources.dcgm")
    source = make_source(
        f"gpus 2\nprofiling {mode}\n", profiling_retry_initial=30, profiling_retry_max=60
    )
    for _ in range(4):
        samples = source.collect()
        clock.advance(1.0)
    assert not families(samples) & PROFILING_FAMILIES
    assert not families(samples) & {"gpu_nvlink_transmit_bytes_total"}
    assert set(PROVIDES) - PROFILING_FAMILIES - {
        "gpu_nvlink_transmit_bytes_total",
        "gpu_nvlink_receive_bytes_total",
    } == families(samples, "0")
    assert why in source.profiling_reason
    said = [
        r.getMessage() for r in caplog.records if "DCGM profiling unavailable" in r.getMessage()
    ]
    assert len(said) == 1 and why in said[0] and "gpu_sm_active_ratio" in said[0]
    fake_dcgm.command("profiling ok")  # the profiler went away: tried again after the backoff
    clock.advance(30.0)
    samples = source.collect()
    assert families(samples, "0") >= PROFILING_FAMILIES
    assert source.profiling_reason == ""


def test_paused_profiling_is_absent_and_said_once_then_comes_back(
    make_source, clock, fake_dcgm, caplog
):
    caplog.set_level(logging.INFO, logger="exporter.sources.dcgm")
    source = make_source("gpus 1\n")
    assert families(source.collect()) >= PROFILING_FAMILIES
    fake_dcgm.command("profiling paused 1")
    for _ in range(4):
        clock.advance(1.0)
        samples = source.collect()
        assert not families(samples) & PROFILING_FAMILIES
        assert "gpu_power_watts" in families(samples)
    fake_dcgm.command("profiling paused 0")
    clock.advance(1.0)
    assert families(source.collect()) >= PROFILING_FAMILIES
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "profiling values are blank" in m]) == 1
    assert len([m for m in messages if "profiling values are back" in m]) == 1


def test_embedded_dcgm_needs_no_hostengine(make_source, fake_dcgm):
    source = make_source("gpus 2\nhostengine down\n", embedded=True)
    samples = source.collect()
    assert families(samples, "1") == set(PROVIDES)
    assert fake_dcgm.calls("dcgmStartEmbedded") == 1 and fake_dcgm.calls("dcgmConnect_v2") == 0
    source.close()
    assert fake_dcgm.calls("dcgmStopEmbedded") == 1


def test_without_libdcgm_the_source_says_so(make_source):
    source = make_source("library 0\n")
    with pytest.raises(SourceUnavailable, match=r"libdcgm\.so\.4 not found"):
        source.collect()


def test_no_supported_gpu_is_a_down_source(make_source):
    with pytest.raises(SourceUnavailable, match="sees no supported GPU"):
        make_source("gpus 0\n").collect()


@pytest.mark.parametrize("names", ["old", "4.6"])
def test_fields_resolve_under_old_and_4_6_names_without_deprecation_warnings(fake_dcgm, names):
    import dcgm_fields

    fake_dcgm.configure(f"names {names}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DeprecationWarning escaping resolve() fails here
        resolved = F.resolve(dcgm_fields, (*F.BASIC, *F.RECENT, *F.PROFILING))
    assert not resolved.skipped
    assert resolved.numbers[F.GPU_TEMP.key] == 150
    assert resolved.numbers[F.CLOCK_EVENTS.key] == 112
    assert resolved.numbers[F.RECOVERY_ACTION.key] == 1523
    if names == "4.6":
        assert resolved.names[F.GPU_TEMP.key] == "DCGM_FI_DEV_GPU_TEMP_CELSIUS"
        assert resolved.names[F.POWER.key] == "DCGM_FI_DEV_POWER_USAGE_WATTS"
        assert resolved.names[F.RECOVERY_ACTION.key] == "DCGM_FI_DEV_GPU_RECOVERY_ACTION"
        assert resolved.deprecated == []
        with pytest.warns(DeprecationWarning, match="DCGM_FI_DEV_GPU_TEMP_CELSIUS"):
            assert dcgm_fields.DCGM_FI_DEV_GPU_TEMP == 150  # the fake plays 4.6 here
    else:
        assert resolved.names[F.GPU_TEMP.key] == "DCGM_FI_DEV_GPU_TEMP"
        assert resolved.names[F.CLOCK_EVENTS.key] == "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"
        assert resolved.names[F.RECOVERY_ACTION.key] == "DCGM_FI_DEV_GET_GPU_RECOVERY_ACTION"
        with pytest.raises(AttributeError):
            _ = dcgm_fields.DCGM_FI_DEV_GPU_TEMP_CELSIUS


def test_a_field_whose_number_disagrees_or_is_unknown_is_skipped_not_misconverted():
    bindings = SimpleNamespace(
        DCGM_FI_DEV_GPU_TEMP_CELSIUS=1150,  # a renamed constant now naming another field
        DCGM_FI_DEV_GPU_TEMP=150,
        DCGM_FI_DEV_POWER_USAGE=999,
    )
    resolved = F.resolve(bindings, (F.GPU_TEMP, F.POWER, F.ENERGY))
    assert resolved.numbers == {F.GPU_TEMP.key: 150}  # the old name still knows 150
    assert "is 999, this exporter knows 155" in resolved.skipped[F.POWER.key]
    assert "unknown to these bindings" in resolved.skipped[F.ENERGY.key]


def test_the_old_names_still_collect_everything(make_source):
    samples = make_source("gpus 1\nnames old\n").collect()
    assert families(samples) == set(PROVIDES)


def test_a_blank_rate_breaks_the_byte_count_instead_of_guessing_the_gap():
    counter = RateCounter()

    def sample(rate, seconds, blank=False):
        return SimpleNamespace(value=rate, ts=int(seconds * 1e6), isBlank=blank)

    assert counter.observe(sample(100, 1)) == 0
    assert counter.observe(sample(100, 2)) == 100
    assert counter.observe(sample(INT64_BLANK + 2, 3, blank=True)) is None  # not supported
    assert counter.observe(sample(100, 9)) == 100  # nothing counted for the blank stretch
    assert counter.observe(sample(50, 10)) == 150
    assert counter.observe(sample(50, 10)) == 150  # the same sample twice adds nothing
    assert number(SimpleNamespace(value=FP64_BLANK + 1, isBlank=False)) is None  # not found
    assert number(SimpleNamespace(value=float("nan"), isBlank=False)) is None
    assert number(SimpleNamespace(value=2**40, isBlank=False)) == 2**40  # a big energy counter
