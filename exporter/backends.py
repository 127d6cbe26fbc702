"""Choosing the GPU backend: `auto` probes DCGM, then NVML, and never picks the simulator."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nvml", "dcgm", "simulated", "none")

#: Backends whose source is not part of this version yet.
NOT_YET_AVAILABLE = {"dcgm"}

NO_GPU_HINT = (
    "no GPU backend found (no DCGM hostengine answered and NVML found no GPU): exporting only "
    "the exporter's own metrics, gpu_backend_up is 0. To see the whole thing on a machine "
    "without a GPU, run: gpu-inference-exporter serve --backend simulated"
)


def nvml_gpu_count() -> int:
    """Number of GPUs NVML sees; 0 when the library or the driver is missing."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.debug("NVML not usable: %s", exc)
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError as exc:
        log.debug("NVML device count failed: %s", exc)
        return 0
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def dcgm_hostengine_answers(address: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at the DCGM hostengine address."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def detect_backend(
    dcgm_address: str,
    *,
    dcgm_probe: Callable[[str], bool] = dcgm_hostengine_answers,
    nvml_probe: Callable[[], int] = nvml_gpu_count,
) -> str:
    """`dcgm` if a hostengine answers, else `nvml` if NVML finds a GPU, else `none`."""
    if dcgm_probe(dcgm_address):
        return "dcgm"
    if nvml_probe() > 0:
        return "nvml"
    return "none"
