"""What an NVML error means for the exporter, and the backoff between re-initialisations.

Every NVMLError falls in one of four classes:

- `unsupported`: the function or field does not exist on this GPU, driver or mode (NotSupported,
  FunctionNotFound, NoPermission, InvalidArgument, ArgumentVersionMismatch, NotFound). Decided
  once when a GPU is probed: the family is then absent for that GPU, never retried each cycle.
- `gpu`: this GPU is lost or broken (GpuIsLost, Unknown, ResetRequired, GpuNotFound): its
  `gpu_up` is 0, its other series absent, until a re-initialisation finds it again.
- `library`: NVML as a whole is unusable (Uninitialized, DriverNotLoaded, LibraryNotFound,
  LibRmVersionMismatch): the source is down and NVML is initialised again with backoff.
- `transient`: anything else (Timeout, NoData, InsufficientResources...): the reading is skipped
  for this cycle and tried again the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

import pynvml

#: Raised by pynvml (13.x) when an unversioned function is missing from the driver's library;
#: older nvidia-ml-py has no such class and raises FunctionNotFound instead.
LibraryMismatchError: type[Exception] = getattr(
    pynvml, "NVMLLibraryMismatchError", pynvml.NVMLError
)
#: Every exception a pynvml call raises for an NVML answer.
NVML_EXCEPTIONS: tuple[type[Exception], ...] = (pynvml.NVMLError, LibraryMismatchError)


class ErrorClass(StrEnum):
    UNSUPPORTED = "unsupported"
    GPU = "gpu"
    LIBRARY = "library"
    TRANSIENT = "transient"


UNSUPPORTED_CODES = frozenset(
    {
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_INVALID_ARGUMENT,
        pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH,
        pynvml.NVML_ERROR_NOT_FOUND,
    }
)
GPU_CODES = frozenset(
    {
        pynvml.NVML_ERROR_GPU_IS_LOST,
        pynvml.NVML_ERROR_UNKNOWN,
        pynvml.NVML_ERROR_RESET_REQUIRED,
        getattr(pynvml, "NVML_ERROR_GPU_NOT_FOUND", 28),  # nvidia-ml-py 12.535 lacks the name
    }
)
LIBRARY_CODES = frozenset(
    {
        pynvml.NVML_ERROR_UNINITIALIZED,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    }
)


def classify_code(code: int) -> ErrorClass:
    """The class of an NVML return code (see the module docstring)."""
    if code in UNSUPPORTED_CODES:
        return ErrorClass.UNSUPPORTED
    if code in GPU_CODES:
        return ErrorClass.GPU
    if code in LIBRARY_CODES:
        return ErrorClass.LIBRARY
    return ErrorClass.TRANSIENT


def classify(exc: BaseException) -> ErrorClass:
    """The class of an exception raised by a pynvml call.

    pynvml raises NVMLLibraryMismatchError (not an NVMLError) when an unversioned function is
    missing from the driver's library: that is "unsupported" too.
    """
    if isinstance(exc, pynvml.NVMLError):
        return classify_code(int(exc.value))
    if isinstance(exc, LibraryMismatchError):
        return ErrorClass.UNSUPPORTED
    return ErrorClass.TRANSIENT


def describe(exc: BaseException) -> str:
    """A short text for an NVML error: its message and code."""
    if isinstance(exc, pynvml.NVMLError):
        return f"{exc} (NVML error {exc.value})"
    return f"{type(exc).__name__}: {exc}"


def init_failure_reason(exc: BaseException) -> str:
    """One line saying why NVML could not start here, and what usually fixes it."""
    code = getattr(exc, "value", None)
    if code == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
        return (
            "NVML library libnvidia-ml.so.1 not found: no NVIDIA driver on this machine, or, in "
            "a container, the NVIDIA container toolkit did not mount it"
        )
    if code == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
        return "the NVIDIA kernel driver is not loaded (NVML: Driver Not Loaded)"
    if code == pynvml.NVML_ERROR_NO_PERMISSION:
        return "no permission to open the NVIDIA device files (NVML: Insufficient Permissions)"
    if code == pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        return "the NVML library and the loaded kernel driver differ in version: reboot or reload"
    return f"NVML failed to initialise: {describe(exc)}"


class GpuLost(Exception):
    """A GPU answered with a `gpu` class error; the message is NVML's."""


class LibraryDown(Exception):
    """NVML as a whole stopped answering (a `library` class error)."""


class Backoff:
    """Exponential backoff: `ready()` once the current delay has passed since the last failure."""

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._clock = clock
        self.delay = initial
        self.next_at = float("-inf")

    def ready(self) -> bool:
        return self._clock() >= self.next_at

    def failed(self) -> float:
        """Record a failure; returns the seconds until the next try."""
        wait = self.delay
        self.next_at = self._clock() + wait
        self.delay = min(self.delay * 2, self.maximum)
        return wait

    def reset(self) -> None:
        self.delay = self.initial
        self.next_at = float("-inf")
