"""Finding a GPU's handle after an NVML initialisation, without trusting one entry point.

A GPU already known is looked up by UUID, then by PCI bus id, then by index (checked against
its UUID or bus id, since indices shift when a GPU falls off the bus). Each lookup's answer
means one of three things:

- a handle: found;
- the GPU is not there or does not answer (NotFound from a UUID or bus id lookup, a `gpu`
  class error, another GPU at its index): `GpuLost`, and only then;
- the lookup cannot say (the driver lacks the entry point, NotSupported, a transient error):
  the next lookup is tried, and when none can say, `HandleUnknown`: nothing says the GPU is
  gone, so the caller keeps what it knew rather than mark a healthy GPU lost.

A `library` class error (NVML itself is down) is raised as LibraryDown at once.
"""

from __future__ import annotations

from collections.abc import Callable

import pynvml

from exporter.sources.nvml.errors import (
    NVML_EXCEPTIONS,
    ErrorClass,
    GpuLost,
    LibraryDown,
    classify,
    describe,
)
from exporter.sources.nvml.readers import Handle


class HandleUnknown(Exception):
    """No lookup could say where the GPU is (each lacked support or failed transiently)."""


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _CannotSay(Exception):
    """A lookup that lacked support or failed transiently; the message says which and why."""


def _answer(call: Callable[[], object], what: str) -> object:
    """The call's answer; _CannotSay when it is unsupported here or failed transiently."""
    try:
        return call()
    except NVML_EXCEPTIONS as exc:
        kind = classify(exc)
        if kind is ErrorClass.LIBRARY:
            raise LibraryDown(describe(exc)) from exc
        if kind is ErrorClass.GPU:
            raise GpuLost(f"{what}: {describe(exc)}") from exc
        if getattr(exc, "value", None) == pynvml.NVML_ERROR_NOT_FOUND:
            raise GpuLost(f"{what}: no such GPU ({describe(exc)})") from exc
        raise _CannotSay(f"{what}: {describe(exc)}") from None


def ask(call: Callable[[], object], what: str) -> object | None:
    """The call's answer, None when NVML cannot say (GpuLost, LibraryDown as for lookups)."""
    try:
        return _answer(call, what)
    except _CannotSay:
        return None


def identity(handle: Handle) -> tuple[str | None, str | None]:
    """(UUID, PCI bus id) of a handle; None for what NVML cannot say here."""
    uuid = ask(lambda: pynvml.nvmlDeviceGetUUID(handle), "nvmlDeviceGetUUID")
    pci = ask(lambda: pynvml.nvmlDeviceGetPciInfo(handle), "nvmlDeviceGetPciInfo")
    return (
        _text(uuid) if uuid is not None else None,
        _text(pci.busId) if pci is not None else None,  # type: ignore[attr-defined]
    )


def find_handle(index: int, uuid: str, pci_bus_id: str) -> Handle:
    """The handle of a known GPU (by UUID, bus id, then checked index); see the module doc.

    Raises GpuLost, LibraryDown or HandleUnknown.
    """
    attempts: list[tuple[str, Callable[[], object]]] = []
    if uuid:
        attempts.append(
            ("nvmlDeviceGetHandleByUUID", lambda: pynvml.nvmlDeviceGetHandleByUUID(uuid))
        )
    if pci_bus_id:
        attempts.append(
            (
                "nvmlDeviceGetHandleByPciBusId",
                lambda: pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id),
            )
        )
    attempts.append(
        ("nvmlDeviceGetHandleByIndex", lambda: pynvml.nvmlDeviceGetHandleByIndex(index))
    )
    reasons = []
    for name, call in attempts:
        try:
            handle = _answer(call, name)
        except _CannotSay as exc:
            reasons.append(str(exc))
            continue
        if name == "nvmlDeviceGetHandleByIndex":
            _check_identity(handle, index, uuid, pci_bus_id)
        return handle
    raise HandleUnknown("; ".join(reasons))


def _check_identity(handle: Handle, index: int, uuid: str, pci_bus_id: str) -> None:
    """GpuLost when the GPU at `index` is another one than the GPU known there."""
    if uuid or pci_bus_id:
        found_uuid, found_pci = identity(handle)
        if uuid and found_uuid is not None and found_uuid != uuid:
            raise GpuLost(f"index {index} is now {found_uuid}, not {uuid}")
        if pci_bus_id and found_pci is not None and found_pci.lower() != pci_bus_id.lower():
            raise GpuLost(f"index {index} is now the GPU at {found_pci}, not {pci_bus_id}")
