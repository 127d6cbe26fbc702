"""GPU fleet overview: which GPU, on which node, is in trouble, at a glance."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from dashboards.panels import DashboardSpec, Panel, PanelKind, Query, Row, tiers, warning_critical
from dashboards.queries import GPU, THROTTLE_REASONS, sel, sel_re
from exporter import catalog as c

UID = "gpu-fleet"


def _stat(
    title: str, description: str, unit: str, expr: str, instant: bool = False, **kw: object
) -> Panel:
    query = Query(expr, instant=instant)
    return Panel(title, description, unit, (query,), PanelKind.STAT, width=3, height=4, **kw)


def dashboard(t: Thresholds) -> DashboardSpec:
    used_share = f"{sel(c.GPU_MEMORY_USED)} / {sel(c.GPU_MEMORY_TOTAL)}"
    hot = sel(c.GPU_TEMPERATURE, sensor="gpu")
    throttling = sel_re(c.GPU_CLOCK_EVENT_ACTIVE, reason=THROTTLE_REASONS)
    by_gpu = "instance, gpu"
    items: tuple[Panel | Row, ...] = (
        Row("Fleet"),
        _stat(
            "GPUs up",
            "GPUs that answered the last collection (gpu_up 1).",
            "short",
            f"count({sel(c.GPU_UP)} == 1) or vector(0)",
        ),
        _stat(
            "GPUs lost",
            "GPUs that stopped answering (gpu_up 0): fallen off the bus (Xid 79) or failing. "
            "Critical alert: GpuLost.",
            "short",
            f"count({sel(c.GPU_UP)} == 0) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "Average utilization",
            "Mean share of time a kernel ran, across the selected GPUs.",
            "percentunit",
            f"avg({sel(c.GPU_UTILIZATION)})",
            min=0,
            max=1,
        ),
        _stat(
            "Max utilization",
            "Busiest selected GPU's share of time a kernel ran.",
            "percentunit",
            f"max({sel(c.GPU_UTILIZATION)})",
            min=0,
            max=1,
        ),
        _stat(
            "Memory used",
            "Device memory used across the selected GPUs, as a share of their total. "
            "Thresholds: the GPU memory alert's warning and critical levels.",
            "percentunit",
            f"sum({sel(c.GPU_MEMORY_USED)}) / sum({sel(c.GPU_MEMORY_TOTAL)})",
            thresholds=tiers(t.gpu_memory_used),
            min=0,
            max=1,
        ),
        _stat(
            "Hottest GPU",
            "Highest GPU temperature. Thresholds: the temperature alert's levels.",
            "celsius",
            f"max({hot})",
            thresholds=tiers(t.gpu_temperature),
        ),
        _stat(
            "Total power",
            "Board power summed over the selected GPUs.",
            "watt",
            f"sum({sel(c.GPU_POWER)})",
        ),
        _stat(
            "GPUs throttling",
            "GPUs whose clocks a power or thermal limit holds down right now.",
            "short",
            f"count(max by ({by_gpu}) ({throttling}) == 1) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        Row("Events in the selected range"),
        Panel(
            "Xid errors",
            "Xid error events in the time range, by GPU and code. Codes "
            + ", ".join(map(str, t.gpu_xid.critical_codes))
            + " mean a dead or unusable GPU (the Xid alert pages for them).",
            "short",
            (
                Query(
                    f"sum by ({by_gpu}, xid) (increase({sel(c.GPU_XID_ERRORS)}[$__range])) > 0",
                    "{{instance}} gpu {{gpu}} xid {{xid}}",
                    instant=True,
                ),
            ),
            PanelKind.TABLE,
            width=6,
            height=4,
            fault="xid",
            table_columns={"instance": "node", "gpu": "gpu", "xid": "xid", "Value #A": "events"},
        ),
        _stat(
            "Xid events",
            "Xid error events in the time range, all GPUs.",
            "short",
            f"sum(increase({sel(c.GPU_XID_ERRORS)}[$__range])) or vector(0)",
            instant=True,
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "Uncorrectable ECC",
            "Uncorrectable ECC errors in the time range, all GPUs.",
            "short",
            f"sum(increase({sel(c.GPU_ECC_ERRORS, type='uncorrected')}[$__range])) or vector(0)",
            instant=True,
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "Row remaps pending",
            "GPUs with a row remap waiting for a reset.",
            "short",
            f"sum({sel(c.GPU_ROW_REMAP_PENDING)}) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "NVLink links down",
            "NVLink links reported down across the selected GPUs.",
            "short",
            f"count({sel(c.GPU_NVLINK_LINK_UP)} == 0) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "PyTorch OOMs",
            "Out-of-memory errors raised by the PyTorch allocator in the time range.",
            "short",
            f"sum(increase({sel(c.TORCH_CUDA_OOMS)}[$__range])) or vector(0)",
            instant=True,
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "Energy",
            "Energy the selected GPUs consumed in the time range.",
            "joule",
            f"sum(increase({sel(c.GPU_ENERGY)}[$__range]))",
            instant=True,
        ),
        Row("Per GPU"),
        Panel(
            "Utilization",
            "Share of time a kernel ran, per GPU.",
            "percentunit",
            (Query(sel(c.GPU_UTILIZATION), "{{instance}} gpu {{gpu}}"),),
            min=0,
            max=1,
        ),
        Panel(
            "Memory used",
            "Device memory used as a share of total, per GPU, against the alert levels.",
            "percentunit",
            (Query(used_share, "{{instance}} gpu {{gpu}}"),),
            thresholds=tiers(t.gpu_memory_used),
            min=0,
            max=1,
        ),
        Panel(
            "Temperature",
            "GPU temperature per GPU, against the alert levels.",
            "celsius",
            (Query(hot, "{{instance}} gpu {{gpu}}"),),
            thresholds=tiers(t.gpu_temperature),
        ),
        Panel(
            "Power",
            "Board power per node.",
            "watt",
            (Query(f"sum by (instance) ({sel(c.GPU_POWER)})", "{{instance}}"),),
            stacked=True,
        ),
        Panel(
            "Every GPU",
            "One line per GPU: model, utilization, memory used share, temperature, power and "
            "state (1 up, 0 lost).",
            "short",
            (
                Query(f"max by ({by_gpu}, name) ({sel(c.GPU_INFO)})", instant=True),
                Query(f"max by ({by_gpu}) ({sel(c.GPU_UTILIZATION)})", instant=True),
                Query(f"max by ({by_gpu}) ({used_share})", instant=True),
                Query(f"max by ({by_gpu}) ({hot})", instant=True),
                Query(f"max by ({by_gpu}) ({sel(c.GPU_POWER)})", instant=True),
                Query(f"max by ({by_gpu}) ({sel(c.GPU_UP)})", instant=True),
            ),
            PanelKind.TABLE,
            width=24,
            height=10,
            table_columns={
                "instance": "node",
                "gpu": "gpu",
                "name": "model",
                "Value #B": "utilization",
                "Value #C": "memory used",
                "Value #D": "temperature °C",
                "Value #E": "power W",
                "Value #F": "up",
            },
        ),
    )
    return DashboardSpec(
        UID,
        "GPU fleet overview",
        "Every GPU of the fleet: up or lost, busy, full, hot, throttling, and its error events.",
        items,
    )


__all__ = ["GPU", "UID", "dashboard"]
