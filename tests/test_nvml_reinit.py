"""A lost GPU and the re-initialisation that looks for it never take the healthy GPUs down,
whatever entry point the driver's library lacks (each removed in turn from the fake NVML)."""

import re

import pytest

from exporter.sources import SourceUnavailable
from exporter.sources.nvml import NvmlSource
from tests.clock import Clock
from tests.fake_nvml import SOURCE

#: Every entry point the fake exports, as its FUNCTIONS list names them.
ENTRY_POINTS = sorted(
    set(re.findall(r"X\((nvml\w+)\)", SOURCE.read_text().split("#define AS_ENUM")[0]))
)
#: Without these NVML cannot start or list GPUs: the source is down (and says so), no GPU lost.
ESSENTIAL = {"nvmlInitWithFlags", "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2"}
HEALTHY = ("0", "2")


def gpu_up(samples) -> dict[str, float]:
    return {s.label("gpu"): s.value for s in samples if s.name == "gpu_up"}


def collect(source: NvmlSource) -> dict[str, float] | None:
    """gpu_up per GPU, or None while the source is down; a healthy GPU is never 0."""
    try:
        up = gpu_up(source.collect())
    except SourceUnavailable:
        return None
    for gpu in HEALTHY:
        assert up.get(gpu) != 0, f"healthy GPU {gpu} marked lost: {up}"
    return up


@pytest.fixture
def source(fake_nvml):
    made = []

    def make(config: str) -> tuple[NvmlSource, Clock]:
        fake_nvml.configure(config)
        clock = Clock()
        made.append(NvmlSource(clock=clock, event_wait_ms=5))
        return made[-1], clock

    yield make
    for s in made:
        s.close()


def test_the_fake_lists_the_lookups_the_source_falls_back_on():
    assert {
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetHandleByPciBusId_v2",
        "nvmlDeviceGetHandleByIndex_v2",
        "nvmlDeviceGetUUID",
    } <= set(ENTRY_POINTS)
    assert len(ENTRY_POINTS) > 40


@pytest.mark.parametrize("missing", ENTRY_POINTS)
def test_an_entry_point_missing_from_the_start_never_marks_a_healthy_gpu_lost(
    source, fake_nvml, missing
):
    src, clock = source(f"gpus 3\nmissing {missing}")
    first = collect(src)
    if missing in ESSENTIAL:
        assert first is None  # down, with its reason; nothing exported, nothing lost
        return
    assert first == {"0": 1, "1": 1, "2": 1}
    fake_nvml.command("gpu 1 lost")
    assert collect(src) == {"0": 1, "1": 0, "2": 1}
    for _ in range(3):  # re-initialisations with backoff, GPU 1 still gone
        clock.advance(10)
        assert collect(src) == {"0": 1, "1": 0, "2": 1}
    fake_nvml.command("gpu 1 recover")
    clock.advance(60)
    back = collect(src)
    if missing == "nvmlShutdown":  # NVML never shuts down, so it never looks again
        assert back == {"0": 1, "1": 0, "2": 1}
    else:
        assert back == {"0": 1, "1": 1, "2": 1}


@pytest.mark.parametrize("missing", ENTRY_POINTS)
def test_an_entry_point_missing_during_the_reinitialisation_never_marks_a_healthy_gpu_lost(
    source, fake_nvml, missing
):
    src, clock = source("gpus 3")
    assert collect(src) == {"0": 1, "1": 1, "2": 1}
    fake_nvml.command("gpu 1 lost")
    assert collect(src) == {"0": 1, "1": 0, "2": 1}
    fake_nvml.command(f"missing {missing}")
    for _ in range(3):
        clock.advance(10)
        up = collect(src)
        assert up is None or up == {"0": 1, "1": 0, "2": 1}
    fake_nvml.command("gpu 1 recover")
    clock.advance(60)
    back = collect(src)
    if missing == "nvmlInitWithFlags":
        assert back is None  # NVML cannot start again: the source is down, not the GPUs
    elif missing == "nvmlShutdown":  # NVML never shuts down, so it never looks again
        assert back == {"0": 1, "1": 0, "2": 1}
    else:
        assert back == {"0": 1, "1": 1, "2": 1}, "GPU 1 not found again"


@pytest.mark.parametrize(
    "missing",
    [
        "nvmlDeviceGetHandleByUUID",
        "nvmlDeviceGetHandleByUUID,nvmlDeviceGetHandleByPciBusId_v2",
        "nvmlDeviceGetHandleByUUID,nvmlDeviceGetHandleByIndex_v2",
    ],
)
def test_a_lost_gpu_is_found_again_by_any_lookup_the_driver_has(source, fake_nvml, missing):
    src, clock = source("gpus 3")
    collect(src)
    fake_nvml.command("gpu 1 lost")
    collect(src)
    fake_nvml.command(f"missing {missing}\ngpu 1 recover")
    clock.advance(1.5)
    samples = src.collect()
    assert gpu_up(samples) == {"0": 1, "1": 1, "2": 1}
    uuids = {s.label("uuid") for s in samples if s.label("gpu") == "1"}
    assert uuids == {"GPU-fa4e0001-0000-4000-8000-000000000001"}


def test_without_any_lookup_a_lost_gpu_stays_lost_and_the_others_stay_up(source, fake_nvml):
    src, clock = source("gpus 3")
    collect(src)
    fake_nvml.command("gpu 1 lost")
    collect(src)
    lookups = "nvmlDeviceGetHandleByUUID,nvmlDeviceGetHandleByPciBusId_v2"
    fake_nvml.command(f"missing {lookups},nvmlDeviceGetHandleByIndex_v2\ngpu 1 recover")
    clock.advance(1.5)
    assert collect(src) == {"0": 1, "1": 0, "2": 1}
