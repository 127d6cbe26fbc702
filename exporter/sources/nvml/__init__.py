"""The NVML source (nvidia-ml-py): GPU health on a node without DCGM.

Modules: `source` (lifecycle, lost GPUs, re-initialisation), `gpu` (one GPU's state),
`readers` (the NVML calls and the once-only probe), `mig` (MIG devices), `processes`
(opt-in per-process memory), `events` (the Xid event thread), `errors` (what an NVML error
means here, and the backoff).
"""

from exporter.sources.nvml.source import NvmlSource

#: The gpu_* families this source can publish, with the condition where there is one (the
#: README's backend table is generated from this; tests check it against the source).
PROVIDES: dict[str, str] = {
    "gpu_info": "",
    "gpu_up": "",
    "gpu_utilization_ratio": "not in MIG mode",
    "gpu_memory_copy_utilization_ratio": "not in MIG mode",
    "gpu_memory_used_bytes": "",
    "gpu_memory_free_bytes": "",
    "gpu_memory_total_bytes": "",
    "gpu_memory_reserved_bytes": "driver R510 and later",
    "gpu_mig_info": "MIG mode",
    "gpu_mig_memory_used_bytes": "MIG mode",
    "gpu_mig_memory_free_bytes": "MIG mode",
    "gpu_mig_memory_total_bytes": "MIG mode",
    "gpu_process_memory_used_bytes": "--collect.processes",
    "gpu_temperature_celsius": "",
    "gpu_power_watts": "",
    "gpu_power_limit_watts": "",
    "gpu_energy_joules_total": "",
    "gpu_clock_hertz": "",
    "gpu_clock_max_hertz": "",
    "gpu_clock_event_active": "",
    "gpu_pcie_replays_total": "",
    "gpu_nvlink_link_up": "",
    "gpu_nvlink_transmit_bytes_total": "data bytes",
    "gpu_nvlink_receive_bytes_total": "data bytes",
    "gpu_nvlink_errors_total": "",
    "gpu_ecc_errors_total": "",
    "gpu_remapped_rows": "",
    "gpu_row_remap_pending": "",
    "gpu_row_remap_failure": "",
    "gpu_recovery_action": "driver R565 and later",
    "gpu_xid_errors_total": "every event",
}

__all__ = ["PROVIDES", "NvmlSource"]
