"""GPU detail: everything one GPU reports, for the node and GPU chosen at the top."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from dashboards.panels import DashboardSpec, Panel, Query, Row, Threshold, tiers
from dashboards.queries import RATE, sel
from exporter import catalog as c

UID = "gpu-detail"
LEGEND = "gpu {{gpu}}"


def dashboard(t: Thresholds) -> DashboardSpec:
    items: tuple[Panel | Row, ...] = (
        Row("Load and memory"),
        Panel(
            "Utilization",
            "Share of time a kernel ran (utilization) and device memory was read or written "
            "(memory copy). 100% utilization does not mean the SMs or tensor cores are busy: "
            "DCGM's profiling metrics say that, where DCGM runs.",
            "percentunit",
            (
                Query(sel(c.GPU_UTILIZATION), "kernel " + LEGEND),
                Query(sel(c.GPU_MEMORY_COPY_UTILIZATION), "memory copy " + LEGEND),
            ),
            min=0,
            max=1,
        ),
        Panel(
            "Memory",
            "Device memory used by processes, reserved by the driver, and the total "
            "(used + free + reserved = total).",
            "bytes",
            (
                Query(sel(c.GPU_MEMORY_USED), "used " + LEGEND),
                Query(sel(c.GPU_MEMORY_RESERVED), "driver reserved " + LEGEND),
                Query(sel(c.GPU_MEMORY_TOTAL), "total " + LEGEND),
            ),
            min=0,
        ),
        Panel(
            "SM, tensor and DRAM activity (DCGM)",
            "What the GPU really does while utilization says busy: share of cycles the SMs had "
            "warps (SM active), how full they were (occupancy), the tensor cores busy, and the "
            "memory interface moving data. High utilization with low SM or tensor activity "
            "means small or serialized kernels. From DCGM's profiling module: empty on NVML.",
            "percentunit",
            (
                Query(sel(c.GPU_SM_ACTIVE), "sm active " + LEGEND),
                Query(sel(c.GPU_SM_OCCUPANCY), "sm occupancy " + LEGEND),
                Query(sel(c.GPU_TENSOR_ACTIVE), "tensor " + LEGEND),
                Query(sel(c.GPU_DRAM_ACTIVE), "dram " + LEGEND),
            ),
            min=0,
            max=1,
            width=24,
        ),
        Row("Thermal, power and clocks"),
        Panel(
            "Temperature",
            "GPU and memory sensors, against the temperature alert's levels.",
            "celsius",
            (Query(sel(c.GPU_TEMPERATURE), "{{sensor}} " + LEGEND),),
            thresholds=tiers(t.gpu_temperature),
            width=8,
        ),
        Panel(
            "Power against its limit",
            "Board power and the limit the driver enforces; power pinned at the limit for long "
            "means the GPU is power capped.",
            "watt",
            (
                Query(sel(c.GPU_POWER), "power " + LEGEND),
                Query(sel(c.GPU_POWER_LIMIT), "limit " + LEGEND),
            ),
            min=0,
            width=8,
        ),
        Panel(
            "Clocks",
            "Current clocks and the SM clock's maximum: SM well under its maximum under load "
            "means throttling (see clock event reasons).",
            "hertz",
            (
                Query(sel(c.GPU_CLOCK), "{{clock}} " + LEGEND),
                Query(sel(c.GPU_CLOCK_MAX, clock="sm"), "sm max " + LEGEND),
            ),
            min=0,
            width=8,
        ),
        Panel(
            "Clock event reasons",
            "Reasons holding the clocks down (1 while active): thermal and power slowdowns "
            "are the ones to act on; gpu_idle is normal when there is no work.",
            "short",
            (Query(f"{sel(c.GPU_CLOCK_EVENT_ACTIVE)} > 0", "{{reason}} " + LEGEND),),
            step_lines=True,
            min=0,
            max=1,
            width=24,
            fault="thermal_throttle",
        ),
        Row("Interconnect"),
        Panel(
            "NVLink links",
            "State of each NVLink link (1 up, 0 down).",
            "short",
            (Query(sel(c.GPU_NVLINK_LINK_UP), "link {{link}} " + LEGEND),),
            step_lines=True,
            min=0,
            max=1,
            width=8,
        ),
        Panel(
            "NVLink throughput",
            "Data bytes per second over all NVLink links.",
            "Bps",
            (
                Query(f"rate({sel(c.GPU_NVLINK_TRANSMIT)}[{RATE}])", "transmit " + LEGEND),
                Query(f"rate({sel(c.GPU_NVLINK_RECEIVE)}[{RATE}])", "receive " + LEGEND),
            ),
            min=0,
            width=8,
        ),
        Panel(
            "NVLink errors and PCIe replays",
            "NVLink errors by type and PCIe replays, per second: a rising rate means a link "
            "degrading.",
            "ops",
            (
                Query(f"rate({sel(c.GPU_NVLINK_ERRORS)}[{RATE}])", "nvlink {{type}} " + LEGEND),
                Query(f"rate({sel(c.GPU_PCIE_REPLAYS)}[{RATE}])", "pcie replays " + LEGEND),
            ),
            min=0,
            width=8,
        ),
        Panel(
            "PCIe throughput",
            "Bytes per second over PCIe between the host and the GPU, protocol headers "
            "included: prompt uploads, weights loading, host offload. From DCGM's profiling "
            "module: empty on NVML.",
            "Bps",
            (
                Query(f"rate({sel(c.GPU_PCIE_TRANSMIT)}[{RATE}])", "transmit " + LEGEND),
                Query(f"rate({sel(c.GPU_PCIE_RECEIVE)}[{RATE}])", "receive " + LEGEND),
            ),
            min=0,
            width=24,
        ),
        Row("Memory errors and Xid"),
        Panel(
            "ECC errors",
            "Corrected and uncorrected ECC errors counted in each interval.",
            "short",
            (Query(f"increase({sel(c.GPU_ECC_ERRORS)}[{RATE}])", "{{type}} " + LEGEND),),
            min=0,
            width=8,
        ),
        Panel(
            "Remapped rows",
            "Rows remapped, and whether a remap waits for a reset (pending) or failed "
            "(failure: replace the GPU).",
            "short",
            (
                Query(sel(c.GPU_REMAPPED_ROWS), "{{kind}} " + LEGEND),
                Query(sel(c.GPU_ROW_REMAP_PENDING), "pending " + LEGEND),
                Query(sel(c.GPU_ROW_REMAP_FAILURE), "failure " + LEGEND),
            ),
            min=0,
            width=8,
        ),
        Panel(
            "Xid events",
            "Xid error events counted in each interval, by code (whole events). The alert's "
            "severity comes from the code's resolution bucket in NVIDIA's Xid catalog.",
            "short",
            (
                Query(
                    f"round(increase({sel(c.GPU_XID_ERRORS)}[{RATE}])) > 0",
                    "xid {{xid}} " + LEGEND,
                ),
            ),
            min=0,
            width=8,
            decimals=0,
            fault="xid",
        ),
        Panel(
            "Recovery action",
            "What the driver says the GPU needs before work can use it again, held until it "
            "is done: 0 none, 1 GPU reset, 2 node reboot, 3 drain peer-to-peer traffic, 4 "
            "drain and reset (NVML R565+, DCGM 4.5+). Critical alert: GpuRecoveryActionRequired.",
            "short",
            (Query(sel(c.GPU_RECOVERY_ACTION), LEGEND),),
            thresholds=(Threshold(1, "red"),),
            min=0,
            width=24,
            height=5,
            step_lines=True,
        ),
    )
    return DashboardSpec(
        UID,
        "GPU detail",
        "One GPU in depth: load, memory, SM/tensor/DRAM activity, thermal, power, clocks and "
        "throttling, NVLink, PCIe, ECC, row remapping and Xid.",
        items,
    )
