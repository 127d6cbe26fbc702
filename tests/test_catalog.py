"""The catalog: the families other parts depend on exist, and every family follows the rules."""

import pytest

from exporter import catalog
from exporter.catalog import DEVICE_LABELS, FAMILIES, Kind, MetricFamily

REQUIRED = {
    "gpu_info": Kind.GAUGE,
    "gpu_up": Kind.GAUGE,
    "gpu_utilization_ratio": Kind.GAUGE,
    "gpu_memory_copy_utilization_ratio": Kind.GAUGE,
    "gpu_memory_used_bytes": Kind.GAUGE,
    "gpu_memory_free_bytes": Kind.GAUGE,
    "gpu_memory_total_bytes": Kind.GAUGE,
    "gpu_memory_reserved_bytes": Kind.GAUGE,
    "gpu_temperature_celsius": Kind.GAUGE,
    "gpu_power_watts": Kind.GAUGE,
    "gpu_power_limit_watts": Kind.GAUGE,
    "gpu_energy_joules_total": Kind.COUNTER,
    "gpu_clock_hertz": Kind.GAUGE,
    "gpu_clock_max_hertz": Kind.GAUGE,
    "gpu_clock_event_active": Kind.GAUGE,
    "gpu_clock_event_seconds_total": Kind.COUNTER,
    "gpu_pcie_replays_total": Kind.COUNTER,
    "gpu_nvlink_link_up": Kind.GAUGE,
    "gpu_nvlink_transmit_bytes_total": Kind.COUNTER,
    "gpu_nvlink_receive_bytes_total": Kind.COUNTER,
    "gpu_nvlink_errors_total": Kind.COUNTER,
    "gpu_ecc_errors_total": Kind.COUNTER,
    "gpu_remapped_rows": Kind.GAUGE,
    "gpu_row_remap_pending": Kind.GAUGE,
    "gpu_row_remap_failure": Kind.GAUGE,
    "gpu_xid_errors_total": Kind.COUNTER,
    "torch_cuda_memory_allocated_bytes": Kind.GAUGE,
    "torch_cuda_memory_reserved_bytes": Kind.GAUGE,
    "torch_cuda_memory_inactive_split_bytes": Kind.GAUGE,
    "torch_cuda_fragmentation_ratio": Kind.GAUGE,
    "torch_cuda_alloc_retries_total": Kind.COUNTER,
    "torch_cuda_ooms_total": Kind.COUNTER,
    "exporter_build_info": Kind.GAUGE,
    "exporter_source_up": Kind.GAUGE,
    "exporter_collect_duration_seconds": Kind.GAUGE,
    "exporter_collect_errors_total": Kind.COUNTER,
    "exporter_last_collect_timestamp_seconds": Kind.GAUGE,
}

EXTRA_LABELS = {
    "gpu_temperature_celsius": ("sensor",),
    "gpu_clock_hertz": ("clock",),
    "gpu_clock_max_hertz": ("clock",),
    "gpu_clock_event_active": ("reason",),
    "gpu_clock_event_seconds_total": ("reason",),
    "gpu_nvlink_link_up": ("link",),
    "gpu_nvlink_errors_total": ("type",),
    "gpu_ecc_errors_total": ("type",),
    "gpu_remapped_rows": ("kind",),
    "gpu_xid_errors_total": ("xid",),
    "gpu_mig_info": ("gpu_instance", "compute_instance", "mig_uuid", "name"),
    "gpu_mig_memory_used_bytes": ("gpu_instance", "compute_instance"),
    "gpu_mig_memory_free_bytes": ("gpu_instance", "compute_instance"),
    "gpu_mig_memory_total_bytes": ("gpu_instance", "compute_instance"),
    "gpu_process_memory_used_bytes": ("pid", "process"),
    # the allocator is per process: the harness's own and each probed serving process
    **{name: ("pid", "process") for name in REQUIRED if name.startswith("torch_cuda_")},
}


@pytest.mark.parametrize("name,kind", sorted(REQUIRED.items()))
def test_required_family_exists_with_its_type(name, kind):
    assert FAMILIES[name].kind is kind


def test_device_families_carry_gpu_and_uuid_and_info_carries_the_descriptions():
    for name, fam in FAMILIES.items():
        if name.startswith(("gpu_", "torch_cuda_")) and name != "gpu_backend_up":
            assert fam.labels[:2] == DEVICE_LABELS, name
            if name != "gpu_info":
                assert fam.labels[2:] == EXTRA_LABELS.get(name, ()), name
    assert set(catalog.GPU_INFO.labels) == {
        "gpu",
        "uuid",
        "name",
        "pci_bus_id",
        "driver_version",
        "cuda_version",
        "backend",
    }
    assert catalog.EXPORTER_COLLECT_ERRORS.labels == ("source", "reason")


def test_every_family_follows_the_conventions():
    for fam in FAMILIES.values():
        assert catalog.catalog_problems(fam) == [], fam.name


@pytest.mark.parametrize(
    "kwargs,problem",
    [
        (dict(name="gpu_things", kind=Kind.COUNTER), "ends in _total"),
        (dict(name="gpu_temp_total", kind=Kind.GAUGE), "only counters"),
        (dict(name="gpu_latency_milliseconds", kind=Kind.GAUGE, unit="milliseconds"), "base unit"),
        (dict(name="gpu_memory_bytes", kind=Kind.GAUGE), "declare unit"),
        (dict(name="gpu_power", kind=Kind.GAUGE, unit="watts"), "must end in _watts"),
        (dict(name="node_load", kind=Kind.GAUGE), "must start with"),
        (dict(name="gpuLoad", kind=Kind.GAUGE), "snake_case"),
        (dict(name="inference_x_seconds", kind=Kind.HISTOGRAM, unit="seconds"), "buckets"),
        (dict(name="gpu_x", kind=Kind.GAUGE, help="lowercase help"), "capital"),
        (dict(name="gpu_x", kind=Kind.GAUGE, labels=("gpu", "gpu")), "unique"),
    ],
)
def test_a_family_breaking_a_convention_is_rejected(kwargs, problem):
    kwargs.setdefault("help", "Some help")
    with pytest.raises(ValueError, match=problem):
        MetricFamily(**kwargs)


def test_sample_requires_exactly_the_catalog_labels():
    s = catalog.GPU_TEMPERATURE.sample(71.5, gpu="0", uuid="GPU-x", sensor="gpu")
    assert s.name == "gpu_temperature_celsius"
    assert s.labels == (("gpu", "0"), ("uuid", "GPU-x"), ("sensor", "gpu"))
    assert s.value == 71.5
    with pytest.raises(ValueError, match="do not match"):
        catalog.GPU_TEMPERATURE.sample(71.5, gpu="0", uuid="GPU-x")
    with pytest.raises(ValueError, match="do not match"):
        catalog.GPU_UP.sample(1, gpu="0", uuid="GPU-x", node="n1")


def test_lookup_of_a_misspelt_name_suggests_the_right_one():
    assert catalog.family("gpu_power_watts") is catalog.GPU_POWER
    with pytest.raises(KeyError, match="did you mean gpu_power_watts"):
        catalog.family("gpu_power_watt")
