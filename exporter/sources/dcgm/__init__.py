"""The DCGM source (NVIDIA DCGM through pydcgm): GPU health plus the profiling metrics.

Modules: `source` (lifecycle, reconnecting, lost GPUs), `connection` (the pydcgm calls),
`bindings` (finding pydcgm, which is not on PyPI), `fields` (the field numbers and their old and
new constant names), `values` (blank sentinels), `gpu` (field values to samples), `counters`
(byte totals from rates, Xid events from the last Xid), `profiling` (the profiling field group),
`errors` (what a DCGM error means here).
"""

from exporter.sources.dcgm.source import DcgmSource

#: The gpu_* families this source can publish, with the condition where there is one (the
#: README's backend table is generated from this; tests check it against the source).
PROVIDES: dict[str, str] = {
    "gpu_info": "",
    "gpu_up": "",
    "gpu_utilization_ratio": "",
    "gpu_memory_copy_utilization_ratio": "",
    "gpu_memory_used_bytes": "",
    "gpu_memory_free_bytes": "",
    "gpu_memory_total_bytes": "",
    "gpu_memory_reserved_bytes": "",
    "gpu_temperature_celsius": "",
    "gpu_power_watts": "",
    "gpu_power_limit_watts": "",
    "gpu_energy_joules_total": "",
    "gpu_clock_hertz": "sm, memory, video (DCGM has no graphics clock field)",
    "gpu_clock_max_hertz": "sm, memory, video",
    "gpu_clock_event_active": "",
    "gpu_pcie_replays_total": "",
    "gpu_nvlink_link_up": "",
    "gpu_nvlink_transmit_bytes_total": "profiling module; headers included",
    "gpu_nvlink_receive_bytes_total": "profiling module; headers included",
    "gpu_nvlink_errors_total": "",
    "gpu_ecc_errors_total": "",
    "gpu_remapped_rows": "",
    "gpu_row_remap_pending": "",
    "gpu_row_remap_failure": "",
    "gpu_recovery_action": "DCGM 4.5 and later",
    "gpu_xid_errors_total": "the last Xid per collection",
    "gpu_sm_active_ratio": "profiling module",
    "gpu_sm_occupancy_ratio": "profiling module",
    "gpu_tensor_active_ratio": "profiling module",
    "gpu_dram_active_ratio": "profiling module",
    "gpu_pcie_transmit_bytes_total": "profiling module",
    "gpu_pcie_receive_bytes_total": "profiling module",
}

__all__ = ["PROVIDES", "DcgmSource"]
