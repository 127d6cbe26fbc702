"""What a DCGM error means for the exporter.

pydcgm raises `dcgm_structs.DCGMError` (a subclass per code, `.value` the DCGM_ST_* code). The
codes are part of DCGM's C API and stable across releases; they are written out here so the
meaning of each is readable without the bindings.

- `connection`: the hostengine is gone or the handle is no longer valid: the source is down and
  reconnects with backoff (a restarted hostengine has forgotten our field groups and watches).
- `gpu`: a GPU is lost or needs a reset.
- `other`: anything else; the collection fails this cycle and is tried again the next.

Any other failure to watch the profiling fields means the profiling module cannot serve them
(no root, not supported on this GPU, another profiler holds the counters...): the profiling
families are absent, the rest carries on, and `profiling_reason` says why in words.
"""

from __future__ import annotations

from enum import StrEnum

ST_OK = 0
ST_BADPARAM = -1
ST_GENERIC_ERROR = -3
ST_NOT_SUPPORTED = -6
ST_INIT_ERROR = -7
ST_UNINITIALIZED = -10
ST_TIMEOUT = -11
ST_NO_DATA = -14
ST_NO_PERMISSION = -17
ST_GPU_IS_LOST = -18
ST_RESET_REQUIRED = -19
ST_CONNECTION_NOT_VALID = -21
ST_LIBRARY_NOT_FOUND = -25
ST_REQUIRES_ROOT = -29
ST_MODULE_NOT_LOADED = -33
ST_IN_USE = -34
ST_PROFILING_NOT_SUPPORTED = -36
ST_PROFILING_LIBRARY_ERROR = -37
ST_PROFILING_MULTI_PASS = -38
ST_INSUFFICIENT_DRIVER_VERSION = -44
ST_PAUSED = -54


class ErrorClass(StrEnum):
    CONNECTION = "connection"
    GPU = "gpu"
    OTHER = "other"


CONNECTION_CODES = frozenset(
    {ST_CONNECTION_NOT_VALID, ST_UNINITIALIZED, ST_TIMEOUT, ST_INIT_ERROR, ST_LIBRARY_NOT_FOUND}
)
GPU_CODES = frozenset({ST_GPU_IS_LOST, ST_RESET_REQUIRED})

#: Why the profiling module would not watch the profiling fields, by code.
PROFILING_REASONS: dict[int, str] = {
    ST_REQUIRES_ROOT: "the profiling module needs the hostengine to run as root",
    ST_NO_PERMISSION: "no permission to read the GPU's performance counters",
    ST_PROFILING_NOT_SUPPORTED: "this GPU does not support DCGM profiling metrics",
    ST_NOT_SUPPORTED: "DCGM profiling is not supported here",
    ST_MODULE_NOT_LOADED: (
        "the DCGM profiling module could not be loaded (libnvperf_dcgm_host.so missing?)"
    ),
    ST_IN_USE: (
        "another profiler holds the GPU's counters (Nsight Systems/Compute, or another hostengine)"
    ),
    ST_PAUSED: "DCGM is paused",
    ST_PROFILING_LIBRARY_ERROR: "the profiling library returned an unrecoverable error",
    ST_PROFILING_MULTI_PASS: "the profiling fields cannot be collected in a single pass",
    ST_INSUFFICIENT_DRIVER_VERSION: "the NVIDIA driver is too old for DCGM profiling",
}


def code_of(exc: BaseException) -> int | None:
    """The DCGM_ST_* code of a DCGMError (None for any other exception)."""
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def classify(exc: BaseException) -> ErrorClass:
    code = code_of(exc)
    if code in CONNECTION_CODES:
        return ErrorClass.CONNECTION
    if code in GPU_CODES:
        return ErrorClass.GPU
    return ErrorClass.OTHER


def describe(exc: BaseException) -> str:
    """DCGM's message for an error and its code, or the exception's type and text."""
    code = code_of(exc)
    if code is not None:
        try:
            text = str(exc)
        except Exception:  # the real __str__ calls into libdcgm, which may be gone
            text = ""
        return f"{text or 'DCGM error'} (DCGM_ST {code})"
    return f"{type(exc).__name__}: {exc}"


def profiling_reason(exc: BaseException) -> str:
    """Why profiling is unavailable, in words, with DCGM's own message."""
    code = code_of(exc)
    words = PROFILING_REASONS.get(code) if code is not None else None
    return f"{words}: {describe(exc)}" if words else describe(exc)


def connect_failure_reason(exc: BaseException, where: str) -> str:
    """One line saying why connecting (or starting embedded DCGM) failed, and the usual fix."""
    code = code_of(exc)
    if code == ST_LIBRARY_NOT_FOUND:
        return "libdcgm.so.4 not found: the DCGM bindings are here but DCGM's library is not"
    if code == ST_CONNECTION_NOT_VALID:
        return f"no DCGM hostengine answers at {where} (is nv-hostengine running?)"
    return f"connecting to DCGM ({where}) failed: {describe(exc)}"
