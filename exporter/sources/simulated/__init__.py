"""The simulated GPU fleet: a deterministic stand-in for NVML/DCGM with named fault scenarios.

Used for the demo, the tests and the end-to-end alert checks; never chosen silently on a
machine that has a GPU.
"""

from exporter.sources.simulated.fleet import SimulatedSource
from exporter.sources.simulated.models import DEFAULT_MODEL, GPU_MODELS, GpuModel
from exporter.sources.simulated.scenarios import SCENARIOS, Scenario, parse_scenario

#: The gpu_* families this source can publish, with the condition where there is one (the
#: README's backend table is generated from this; tests check it against the source).
PROVIDES: dict[str, str] = {
    name: ""
    for name in (
        "gpu_info",
        "gpu_up",
        "gpu_utilization_ratio",
        "gpu_memory_copy_utilization_ratio",
        "gpu_memory_used_bytes",
        "gpu_memory_free_bytes",
        "gpu_memory_total_bytes",
        "gpu_memory_reserved_bytes",
        "gpu_temperature_celsius",
        "gpu_power_watts",
        "gpu_power_limit_watts",
        "gpu_energy_joules_total",
        "gpu_clock_hertz",
        "gpu_clock_max_hertz",
        "gpu_clock_event_active",
        "gpu_clock_event_seconds_total",
        "gpu_pcie_replays_total",
        "gpu_nvlink_link_up",
        "gpu_nvlink_transmit_bytes_total",
        "gpu_nvlink_receive_bytes_total",
        "gpu_nvlink_errors_total",
        "gpu_ecc_errors_total",
        "gpu_remapped_rows",
        "gpu_row_remap_pending",
        "gpu_row_remap_failure",
        "gpu_recovery_action",
        "gpu_xid_errors_total",
        "gpu_sm_active_ratio",
        "gpu_sm_occupancy_ratio",
        "gpu_tensor_active_ratio",
        "gpu_dram_active_ratio",
        "gpu_pcie_transmit_bytes_total",
        "gpu_pcie_receive_bytes_total",
    )
} | {"gpu_process_memory_used_bytes": "--collect.processes"}

__all__ = [
    "DEFAULT_MODEL",
    "GPU_MODELS",
    "PROVIDES",
    "SCENARIOS",
    "GpuModel",
    "Scenario",
    "SimulatedSource",
    "parse_scenario",
]
