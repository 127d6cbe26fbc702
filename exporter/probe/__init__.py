"""The allocator probe: what a PyTorch serving process runs so that the exporter beside it can
export its caching allocator (`torch_cuda_*`, per process and GPU).

In any PyTorch server, one call (before or after CUDA is first used):

    import exporter.probe
    exporter.probe.start("/run/gie-torch-probe", interval=5.0)

In vLLM, nothing to call: the package declares a vLLM general plugin, which vLLM loads in every
process it starts (API server, engine core, workers); it starts the probe when
GIE_TORCH_PROBE_DIR names a directory (GIE_TORCH_PROBE_INTERVAL: seconds between writes,
default 5). The exporter reads the same directory with `--torch.probe-dir` (whose environment
variable is the same GIE_TORCH_PROBE_DIR).

This package imports only the standard library (and torch, once the process has imported it):
never the exporter's server, aiohttp or prometheus_client.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from exporter.durations import parse_duration
from exporter.probe.writer import DEFAULT_INTERVAL, Probe, start, stop

__all__ = [
    "DEFAULT_INTERVAL",
    "ENV_DIR",
    "ENV_INTERVAL",
    "Probe",
    "start",
    "start_from_env",
    "stop",
]

ENV_DIR = "GIE_TORCH_PROBE_DIR"
ENV_INTERVAL = "GIE_TORCH_PROBE_INTERVAL"

log = logging.getLogger("gpu_inference_exporter.probe")


def start_from_env(environ: Mapping[str, str] = os.environ) -> Probe | None:
    """Start the probe when GIE_TORCH_PROBE_DIR names a directory (None when it does not, or
    when GIE_TORCH_PROBE_INTERVAL is not a duration: said in one log line, never raised)."""
    directory = environ.get(ENV_DIR, "").strip()
    if not directory:
        return None
    text = environ.get(ENV_INTERVAL, "").strip()
    try:
        interval = parse_duration(text) if text else DEFAULT_INTERVAL
        return start(directory, interval)
    except ValueError as exc:
        log.warning("allocator probe not started: %s=%r: %s", ENV_INTERVAL, text, exc)
        return None
