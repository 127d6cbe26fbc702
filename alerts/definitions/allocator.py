"""PyTorch caching allocator alerts: fragmentation under memory pressure, retries, OOMs."""

from __future__ import annotations

from alerts.definitions.common import GPU, NUMBER, PERCENT, held, max_by, num, pct, two_tiers
from alerts.model import Alert, TierRule
from alerts.thresholds import Thresholds
from exporter import catalog as c


def allocator_alerts(t: Thresholds) -> list[Alert]:
    mem = t.links.memory_dashboard
    frag, retries, ooms = t.torch_fragmentation, t.torch_alloc_retries, t.torch_ooms
    under_pressure = (
        f"({c.TORCH_CUDA_FRAGMENTATION} and {c.TORCH_CUDA_MEMORY_INACTIVE_SPLIT} > "
        f"{num(frag.min_stranded_bytes)}) and on (uuid) "
        f"({c.GPU_MEMORY_USED} / {c.GPU_MEMORY_TOTAL} > {num(frag.pressure)})"
    )
    stranded = f"{frag.min_stranded_bytes / 2**30:g} GiB"
    return [
        Alert(
            "TorchCudaFragmentationHigh",
            "allocator",
            "allocator",
            "PyTorch allocator memory is fragmented while the GPU is nearly full",
            PERCENT,
            mem,
            "gpu",
            two_tiers(
                max_by("gpu", under_pressure),
                frag.tiers,
                f"The PyTorch caching allocator on {GPU} has {PERCENT} of its reserved memory "
                f"stranded in partly used segments (at least {stranded}), above <threshold>"
                f"<for>, while the GPU has more than {pct(frag.pressure)} of its memory in "
                "use: large allocations can fail with memory apparently free.",
                f"inactive split / reserved > <threshold>, at least {stranded} stranded, GPU "
                f"memory used > {pct(frag.pressure)}<for>",
                pct,
            ),
            key="torch_fragmentation",
            clears="fragmentation or memory pressure falls",
        ),
        Alert(
            "TorchCudaAllocRetries",
            "allocator",
            "allocator",
            "PyTorch allocations are failing and retrying",
            NUMBER,
            mem,
            "gpu",
            (
                TierRule(
                    "warning",
                    max_by("gpu", f"increase({c.TORCH_CUDA_ALLOC_RETRIES}[{retries.window}])")
                    + f" > {num(retries.threshold)}",
                    retries.for_,
                    f"The PyTorch caching allocator on {GPU} had to free its cache and retry "
                    f"{NUMBER} allocation(s) in the last {retries.window}: the step before "
                    "an out of memory error.",
                    f"alloc retries increase over {retries.window} > {num(retries.threshold)}"
                    f"{held(retries.for_)}",
                ),
            ),
            key="torch_alloc_retries",
            clears="no retry for the window",
        ),
        Alert(
            "TorchCudaOutOfMemory",
            "allocator",
            "allocator",
            "PyTorch raised CUDA out of memory errors",
            NUMBER,
            mem,
            "gpu",
            (
                TierRule(
                    "critical",
                    max_by("gpu", f"increase({c.TORCH_CUDA_OOMS}[{ooms.window}])")
                    + f" > {num(ooms.threshold)}",
                    ooms.for_,
                    f"The PyTorch caching allocator on {GPU} raised {NUMBER} out of memory "
                    f"error(s) in the last {ooms.window}: requests or the process are failing.",
                    f"OOMs increase over {ooms.window} > {num(ooms.threshold)}{held(ooms.for_)}",
                ),
            ),
            key="torch_ooms",
            clears="no OOM for the window",
        ),
    ]
