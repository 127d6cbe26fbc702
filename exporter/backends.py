"""Choosing the GPU backend: `auto` probes DCGM, then NVML, and never picks the simulator."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

BACKENDS = ("auto", "nvml", "dcgm", "simulated", "none")

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


def dcgm_usable(address: str, *, embedded: bool = False) -> bool:
    """True when DCGM's Python bindings import and (unless embedded) a hostengine answers.

    A hostengine that answers while the bindings are missing is logged: it is the one case
    where `auto` passes DCGM over for a fixable reason.
    """
    from exporter.sources.dcgm.bindings import import_error

    if not embedded and not dcgm_hostengine_answers(address):
        return False
    why_not = import_error()
    if why_not is not None:
        where = "embedded DCGM was asked for" if embedded else f"a hostengine answers at {address}"
        log.warning("%s, but %s; trying NVML", where, why_not)
        return False
    return True


def detect_backend(
    dcgm_address: str,
    *,
    dcgm_probe: Callable[[str], bool] = dcgm_usable,
    nvml_probe: Callable[[], int] = nvml_gpu_count,
) -> str:
    """`dcgm` if DCGM is usable (see dcgm_usable), else `nvml` if NVML finds a GPU, else
    `none`."""
    if dcgm_probe(dcgm_address):
        return "dcgm"
    if nvml_probe() > 0:
        return "nvml"
    return "none"
