"""Fake `dcgm_agent`: the DCGM C API functions the fake pydcgm calls, with the real names and
arguments, answering from the fake engine instead of libdcgm. Like the real module, functions
that return a value raise DCGMError on failure, and the watch/update ones return the code for
pydcgm to check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dcgm_structs
import fake_dcgm_engine
from fake_dcgm_engine import ENGINE, EngineError


def _api(returns_code: bool = False) -> Callable:
    """Count the call, pick up control commands, and turn engine errors into DCGM's."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            ENGINE.call(fn.__name__)
            try:
                result = fn(*args, **kwargs)
            except EngineError as exc:
                if returns_code:
                    return exc.code
                raise dcgm_structs.DCGMError(exc.code) from None
            return dcgm_structs.DCGM_ST_OK if returns_code else result

        return call

    return wrap


class _FieldGroupId:
    """What dcgmFieldGroupCreate returns in the real bindings (a c_void_p: `.value`)."""

    def __init__(self, value: int) -> None:
        self.value = value


@_api()
def dcgmInit() -> None:
    if not ENGINE.library:
        raise EngineError(dcgm_structs.DCGM_ST_LIBRARY_NOT_FOUND)


@_api()
def dcgmShutdown() -> None:
    pass


@_api()
def dcgmStartEmbedded(opMode: int) -> int:
    return ENGINE.start_embedded()


@_api()
def dcgmStopEmbedded(pDcgmHandle: int) -> None:
    ENGINE.disconnect(pDcgmHandle)


@_api()
def dcgmConnect_v2(ipAddress: str, connectParams: Any, version: int = 2) -> int:
    return ENGINE.connect(ipAddress)


@_api()
def dcgmDisconnect(dcgm_handle: int) -> None:
    ENGINE.disconnect(dcgm_handle)


@_api()
def dcgmGetAllSupportedDevices(dcgm_handle: int) -> list[int]:
    ENGINE.check(dcgm_handle)
    return [g.index for g in ENGINE.gpus]


@_api()
def dcgmGetAllDevices(dcgm_handle: int) -> list[int]:
    ENGINE.check(dcgm_handle)
    return [g.index for g in ENGINE.gpus]


@_api()
def dcgmGetDeviceAttributes(dcgm_handle: int, gpuId: int, version: int = 3) -> Any:
    g = ENGINE.attributes(dcgm_handle, gpuId)
    ids = dcgm_structs.c_dcgmDeviceIdentifiers_v1(
        version=1,
        brandName="Nvidia",
        deviceName=g.name,
        pciBusId=g.pci_bus_id,
        serial=f"165{g.index:010d}",
        uuid=g.uuid,
        vbios="96.00.89.00.01",
        inforomImageVersion="G520.0200.00.05",
        pciDeviceId=0x233010DE,
        pciSubSystemId=0x16C110DE,
        driverVersion=ENGINE.driver,
        virtualizationMode=0,
    )
    return dcgm_structs.c_dcgmDeviceAttributes_v3(ids)


@_api()
def dcgmGetGpuStatus(dcgm_handle: int, gpuId: int) -> int:
    return ENGINE.status(dcgm_handle, gpuId)


@_api()
def dcgmGetNvLinkLinkStatus(dcgm_handle: int) -> Any:
    gpus = [
        dcgm_structs.c_dcgmNvLinkGpuLinkStatus_v4(gpu_id, states)
        for gpu_id, states in ENGINE.link_states(dcgm_handle)
    ]
    return dcgm_structs.c_dcgmNvLinkStatus_v4(gpus)


@_api()
def dcgmFieldGroupCreate(dcgm_handle: int, fieldIds: list[int], fieldGroupName: str) -> Any:
    return _FieldGroupId(ENGINE.create_field_group(dcgm_handle, list(fieldIds), fieldGroupName))


@_api()
def dcgmFieldGroupDestroy(dcgm_handle: int, fieldGroupId: Any) -> None:
    ENGINE.destroy_field_group(dcgm_handle, fieldGroupId.value)


@_api(returns_code=True)
def dcgmWatchFields(
    dcgm_handle: int,
    groupId: int,
    fieldGroupId: Any,
    updateFreq: int,
    maxKeepAge: float,
    maxKeepSamples: int,
) -> int:
    ENGINE.watch(dcgm_handle, fieldGroupId.value, updateFreq)
    return dcgm_structs.DCGM_ST_OK


@_api(returns_code=True)
def dcgmUnwatchFields(dcgm_handle: int, groupId: int, fieldGroupId: Any) -> int:
    ENGINE.unwatch(dcgm_handle, fieldGroupId.value)
    return dcgm_structs.DCGM_ST_OK


@_api(returns_code=True)
def dcgmUpdateAllFields(dcgm_handle: int, waitForUpdate: int) -> int:
    ENGINE.check(dcgm_handle)
    return dcgm_structs.DCGM_ST_OK


@_api(returns_code=True)
def dcgmGetLatestValues(
    dcgm_handle: int, groupId: int, fieldGroupId: Any, callback: Callable, userData: Any
) -> int:
    """Call `callback(gpuId, values, numValues, userData)` once per GPU, like libdcgm."""
    for gpu_id, rows in ENGINE.latest(dcgm_handle, fieldGroupId.value).items():
        values = []
        for field_id, kind, status, value, ts in rows:
            raw = dcgm_structs.c_dcgmFieldValue_v1()
            raw.fieldId, raw.fieldType, raw.status, raw.ts = field_id, ord(kind), status, ts
            if value is not None:
                if kind == "d":
                    raw.value.dbl = float(value)
                else:
                    raw.value.i64 = int(value)
            values.append(raw)
        callback(gpu_id, values, len(values), userData)
    return dcgm_structs.DCGM_ST_OK


__all__ = [name for name in dir() if name.startswith("dcgm")] + ["fake_dcgm_engine"]
