"""The NVML source (nvidia-ml-py): GPU health on a node without DCGM.

Modules: `source` (lifecycle, lost GPUs, re-initialisation), `gpu` (one GPU's state),
`readers` (the NVML calls and the once-only probe), `mig` (MIG devices), `processes`
(opt-in per-process memory), `events` (the Xid event thread), `errors` (what an NVML error
means here, and the backoff).
"""

from exporter.sources.nvml.source import NvmlSource

__all__ = ["NvmlSource"]
