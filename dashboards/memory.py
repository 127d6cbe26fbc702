"""Memory and fragmentation: VRAM against total and time to full, and the PyTorch allocator."""

from __future__ import annotations

from alerts.thresholds import Thresholds
from dashboards.panels import (
    DashboardSpec,
    Panel,
    PanelKind,
    Query,
    Row,
    Threshold,
    tiers,
)
from dashboards.queries import RATE, sel
from exporter import catalog as c

UID = "gpu-memory"
LEGEND = "{{node}} gpu {{gpu}}"
#: The allocator series are per process: several share a GPU (tensor-parallel workers, a canary).
PROCESS_LEGEND = LEGEND + " {{process}} pid {{pid}}"


def time_to_full(window: str = "10m") -> str:
    """Seconds until device memory is full at the current growth rate, per GPU (absent when
    not growing)."""
    free = f"({sel(c.GPU_MEMORY_FREE)})"
    growth = f"deriv({sel(c.GPU_MEMORY_USED)}[{window}])"
    return f"max by (cluster, node, gpu, uuid) ({free} / ({growth} > 0))"


def dashboard(t: Thresholds) -> DashboardSpec:
    mig_labels = ", ".join(c.MIG_LABELS)
    used_share = f"{sel(c.GPU_MEMORY_USED)} / {sel(c.GPU_MEMORY_TOTAL)}"
    items: tuple[Panel | Row, ...] = (
        Row("Device memory"),
        Panel(
            "VRAM used",
            "Device memory used as a share of total, per GPU, against the memory alert's "
            "warning and critical levels.",
            "percentunit",
            (Query(used_share, LEGEND),),
            thresholds=tiers(t.gpu_memory_used),
            min=0,
            max=1,
            width=9,
        ),
        Panel(
            "VRAM used and total",
            "Device memory used and total, per GPU.",
            "bytes",
            (
                Query(sel(c.GPU_MEMORY_USED), "used " + LEGEND),
                Query(sel(c.GPU_MEMORY_TOTAL), "total " + LEGEND),
            ),
            min=0,
            width=9,
        ),
        Panel(
            "Time to full",
            "At the growth of the last 10 minutes, seconds until device memory is full, for "
            "the five GPUs closest to full (only GPUs whose memory is growing), with their "
            "node and GPU. Red under the fill-within alert's horizon.",
            "s",
            (Query(f"bottomk(5, {time_to_full()})", instant=True),),
            PanelKind.TABLE,
            base_color="red",
            thresholds=(Threshold(t.gpu_memory_filling.horizon.seconds, "green"),),
            width=6,
            fault="memory_leak",
            table_columns={"node": "node", "gpu": "gpu", "Value": "seconds to full"},
        ),
        Panel(
            "Memory by process",
            "Device memory each process holds, per GPU (collected with --collect.processes): "
            "who to blame when VRAM climbs.",
            "bytes",
            (Query(sel(c.GPU_PROCESS_MEMORY_USED), "{{process}} ({{pid}}) gpu {{gpu}}"),),
            min=0,
            needs="processes",
        ),
        Panel(
            "MIG instances",
            "Memory used against total per MIG device (GPUs in MIG mode only), labelled by "
            "GPU instance and compute instance.",
            "bytes",
            (
                Query(
                    sel(c.GPU_MIG_MEMORY_USED),
                    "used gpu {{gpu}} gi {{gpu_instance}} ci {{compute_instance}}",
                ),
                Query(
                    sel(c.GPU_MIG_MEMORY_TOTAL),
                    "total gpu {{gpu}} gi {{gpu_instance}} ci {{compute_instance}}",
                ),
                Query(
                    f"{sel(c.GPU_MIG_MEMORY_FREE)} * on ({mig_labels}) group_left(name) "
                    f"{sel(c.GPU_MIG_INFO)}",
                    "free {{name}} gpu {{gpu}}",
                ),
            ),
            min=0,
            needs="mig",
        ),
        Row("PyTorch caching allocator"),
        Panel(
            "Allocated against reserved",
            "Memory held by live tensors (allocated) and what the allocator holds from the "
            "driver (reserved). A widening gap is cached or stranded memory.",
            "bytes",
            (
                Query(sel(c.TORCH_CUDA_MEMORY_ALLOCATED), "allocated " + PROCESS_LEGEND),
                Query(sel(c.TORCH_CUDA_MEMORY_RESERVED), "reserved " + PROCESS_LEGEND),
            ),
            min=0,
        ),
        Panel(
            "Inactive split bytes",
            "Free memory stranded inside partly used segments, which empty_cache() cannot "
            "return: the fragmentation the OOM message points at.",
            "bytes",
            (Query(sel(c.TORCH_CUDA_MEMORY_INACTIVE_SPLIT), PROCESS_LEGEND),),
            min=0,
        ),
        Panel(
            "Fragmentation ratio",
            "Inactive split over reserved, against the fragmentation alert's levels. "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True is the usual cure.",
            "percentunit",
            (Query(sel(c.TORCH_CUDA_FRAGMENTATION), PROCESS_LEGEND),),
            thresholds=tiers(t.torch_fragmentation.tiers),
            min=0,
            max=1,
        ),
        Panel(
            "Allocation retries and OOMs",
            "Allocations that freed the cache and retried (the step before an OOM) and OOMs, "
            "per interval.",
            "short",
            (
                Query(
                    f"increase({sel(c.TORCH_CUDA_ALLOC_RETRIES)}[{RATE}])",
                    "retries " + PROCESS_LEGEND,
                ),
                Query(f"increase({sel(c.TORCH_CUDA_OOMS)}[{RATE}])", "OOMs " + PROCESS_LEGEND),
            ),
            min=0,
        ),
    )
    return DashboardSpec(
        UID,
        "GPU memory and fragmentation",
        "VRAM against total with time to full, and the PyTorch allocator: allocated, reserved, "
        "stranded, retries and OOMs.",
        items,
    )
