"""GPU fleet overview: which GPU, on which node, is in trouble, at a glance."""

from __future__ import annotations

from alerts.definitions.records import GPU_COUNT
from alerts.definitions.records import NVLINK_LINKS_UP as LINKS
from alerts.thresholds import Thresholds
from dashboards.panels import DashboardSpec, Panel, PanelKind, Query, Row, tiers, warning_critical
from dashboards.queries import GPU, sel, sel_re
from exporter import catalog as c

UID = "gpu-fleet"


def _stat(
    title: str, description: str, unit: str, expr: str, instant: bool = False, **kw: object
) -> Panel:
    query = Query(expr, instant=instant)
    return Panel(title, description, unit, (query,), PanelKind.STAT, width=3, height=4, **kw)


def dashboard(t: Thresholds) -> DashboardSpec:
    """Cheap at 1,000 nodes x 8 GPUs: instant queries over the state series and the alerts'
    own recording rules; no range query over every Xid or NVLink series on a refresh."""
    used_share = f"{sel(c.GPU_MEMORY_USED)} / {sel(c.GPU_MEMORY_TOTAL)}"
    hot = sel(c.GPU_TEMPERATURE, sensor="gpu")
    slow = t.gpu_clock_slowdown
    throttling = sel_re(c.GPU_CLOCK_EVENT_ACTIVE, reason="|".join(slow.reasons))
    by_gpu = "cluster, node, gpu"
    where = 'cluster=~"$cluster", node=~"$node"'
    firing = f'ALERTS{{alertstate="firing", mixin="gpu-inference-exporter", {where}}}'
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
            "GPUs missing",
            f"GPUs the nodes had within {t.gpu_missing.lookback} and no longer see (a GPU that "
            "fell off the bus before the exporter started, or a hung GPU source). Critical "
            "alert: GpuMissing.",
            "short",
            f"sum(max_over_time({GPU_COUNT}{{{where}}}[{t.gpu_missing.lookback}]) - "
            f"{GPU_COUNT}{{{where}}}) or vector(0)",
            thresholds=warning_critical(1, 1),
            decimals=0,
        ),
        _stat(
            "Needs a reset or reboot",
            "GPUs whose driver asks for a recovery action (reset, reboot, drain). Critical "
            "alert: GpuRecoveryActionRequired.",
            "short",
            f"count({sel(c.GPU_RECOVERY_ACTION)} > 0) or vector(0)",
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
            "GPUs throttling",
            f"GPUs whose clocks are held down right now by {', '.join(slow.reasons)}: the "
            "reasons the GpuClockSlowdown alert counts (it fires on their share of time).",
            "short",
            f"count(max by ({by_gpu}) ({throttling}) == 1) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        Row("Faults now"),
        Panel(
            "Firing alerts",
            "Every alert of this project firing now, by severity, node and GPU: the on-call's "
            "list. One alert on many nodes at once also fires GpuFleetWideFault.",
            "short",
            (
                Query(
                    f"max by (alertname, severity, cluster, node, gpu, problem) ({firing})",
                    instant=True,
                ),
            ),
            PanelKind.TABLE,
            width=12,
            height=6,
            fault="xid",
            table_columns={
                "alertname": "alert",
                "severity": "severity",
                "cluster": "cluster",
                "node": "node",
                "gpu": "gpu",
                "problem": "fleet-wide",
            },
        ),
        Panel(
            "Xid counts",
            "Xid events each GPU has counted since its exporter started (codes with at least "
            "one), and the GPUs the Xid alert fires for now. The alert's severity comes from "
            "the code's resolution bucket in NVIDIA's Xid catalog.",
            "short",
            (Query(f"{sel(c.GPU_XID_ERRORS)} > 0", instant=True),),
            PanelKind.TABLE,
            width=6,
            height=6,
            fault="xid",
            decimals=0,
            table_columns={"node": "node", "gpu": "gpu", "xid": "xid", "Value": "events"},
        ),
        _stat(
            "Uncorrectable ECC",
            "GPUs with uncorrectable ECC errors since their driver loaded (cleared by a GPU "
            "reset). Critical alert: GpuEccUncorrectableErrors.",
            "short",
            f"count({sel(c.GPU_ECC_ERRORS, type='uncorrected')} > 0) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "Row remaps pending",
            "GPUs with a row remap waiting for a reset.",
            "short",
            f"count({sel(c.GPU_ROW_REMAP_PENDING)} > 0) or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "GPUs short of NVLink",
            "GPUs with fewer NVLink links up than the best GPU of their node, or none (the "
            "GpuNvlinkDown alert's comparison, from its recording rule).",
            "short",
            f"count({LINKS}{{{where}}} < on (cluster, node) group_left "
            f"max by (cluster, node) ({LINKS}{{{where}}}) or {LINKS}{{{where}}} == 0) "
            "or vector(0)",
            thresholds=warning_critical(1, 1),
        ),
        _stat(
            "PyTorch OOMs",
            "Out-of-memory errors raised by the PyTorch allocator in the time range (whole "
            "errors: increase() extrapolates, so the figure is rounded).",
            "short",
            f"round(sum(increase({sel(c.TORCH_CUDA_OOMS)}[$__range]))) or vector(0)",
            instant=True,
            thresholds=warning_critical(1, 1),
            decimals=0,
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
            "Share of time a kernel ran: the ten busiest GPUs of the selection.",
            "percentunit",
            (Query(f"topk(10, {sel(c.GPU_UTILIZATION)})", "{{node}} gpu {{gpu}}"),),
            min=0,
            max=1,
        ),
        Panel(
            "Memory used",
            "Device memory used as a share of total: the ten fullest GPUs, against the alert "
            "levels.",
            "percentunit",
            (Query(f"topk(10, {used_share})", "{{node}} gpu {{gpu}}"),),
            thresholds=tiers(t.gpu_memory_used),
            min=0,
            max=1,
        ),
        Panel(
            "Temperature",
            "GPU temperature: the ten hottest GPUs, against the alert levels.",
            "celsius",
            (Query(f"topk(10, {hot})", "{{node}} gpu {{gpu}}"),),
            thresholds=tiers(t.gpu_temperature),
        ),
        Panel(
            "Power",
            "Board power of the ten nodes that draw the most.",
            "watt",
            (Query(f"topk(10, sum by (cluster, node) ({sel(c.GPU_POWER)}))", "{{node}}"),),
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
                "node": "node",
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
