"""Fake `dcgm_structs`: DCGM's return codes, its exception classes and the constants the
exporter uses, as the real bindings define them (NVIDIA/DCGM testing/python3/dcgm_structs.py).

DCGMError(code) returns the subclass for that code (DCGMError_ConnectionNotValid...), and
dcgmExceptionClass(code) names it, as in the real module.
"""

from __future__ import annotations

from typing import ClassVar

import fake_dcgm_engine

DCGM_ST_OK = 0
DCGM_ST_BADPARAM = -1
DCGM_ST_GENERIC_ERROR = -3
DCGM_ST_MEMORY = -4
DCGM_ST_NOT_CONFIGURED = -5
DCGM_ST_NOT_SUPPORTED = -6
DCGM_ST_INIT_ERROR = -7
DCGM_ST_NVML_ERROR = -8
DCGM_ST_PENDING = -9
DCGM_ST_UNINITIALIZED = -10
DCGM_ST_TIMEOUT = -11
DCGM_ST_VER_MISMATCH = -12
DCGM_ST_UNKNOWN_FIELD = -13
DCGM_ST_NO_DATA = -14
DCGM_ST_STALE_DATA = -15
DCGM_ST_NOT_WATCHED = -16
DCGM_ST_NO_PERMISSION = -17
DCGM_ST_GPU_IS_LOST = -18
DCGM_ST_RESET_REQUIRED = -19
DCGM_ST_FUNCTION_NOT_FOUND = -20
DCGM_ST_CONNECTION_NOT_VALID = -21
DCGM_ST_GPU_NOT_SUPPORTED = -22
DCGM_ST_LIBRARY_NOT_FOUND = -25
DCGM_ST_DUPLICATE_KEY = -26
DCGM_ST_REQUIRES_ROOT = -29
DCGM_ST_MODULE_NOT_LOADED = -33
DCGM_ST_IN_USE = -34
DCGM_ST_GROUP_IS_EMPTY = -35
DCGM_ST_PROFILING_NOT_SUPPORTED = -36
DCGM_ST_PROFILING_LIBRARY_ERROR = -37
DCGM_ST_PROFILING_MULTI_PASS = -38
DCGM_ST_INSUFFICIENT_DRIVER_VERSION = -44
DCGM_ST_PAUSED = -54

DCGM_OPERATION_MODE_AUTO = 1
DCGM_OPERATION_MODE_MANUAL = 2
DCGM_GROUP_DEFAULT = 0
DCGM_GROUP_EMPTY = 1
DCGM_GROUP_ALL_GPUS = 0x7FFFFFFF
DCGM_MAX_NUM_DEVICES = 32
DCGM_NVLINK_MAX_LINKS_PER_GPU = 18
DcgmNvLinkLinkStateNotSupported = 0
DcgmNvLinkLinkStateDisabled = 1
DcgmNvLinkLinkStateDown = 2
DcgmNvLinkLinkStateUp = 3

_MESSAGES = {
    DCGM_ST_OK: "Success",
    DCGM_ST_BADPARAM: "Bad parameter passed to function",
    DCGM_ST_GENERIC_ERROR: "Generic unspecified error",
    DCGM_ST_NOT_SUPPORTED: "Feature not supported",
    DCGM_ST_INIT_ERROR: "DCGM initialization error",
    DCGM_ST_UNINITIALIZED: "Object is in an undefined state",
    DCGM_ST_TIMEOUT: "Timeout",
    DCGM_ST_NO_DATA: "No data is available",
    DCGM_ST_NOT_WATCHED: "Field is not being updated",
    DCGM_ST_NO_PERMISSION: "Not permissioned",
    DCGM_ST_GPU_IS_LOST: "GPU is unreachable",
    DCGM_ST_CONNECTION_NOT_VALID: "The connection to the host engine is not valid any longer",
    DCGM_ST_LIBRARY_NOT_FOUND: "DCGM library could not be found",
    DCGM_ST_DUPLICATE_KEY: "Duplicate key passed to function",
    DCGM_ST_REQUIRES_ROOT: (
        "This operation is not supported when the host engine is running as non root"
    ),
    DCGM_ST_MODULE_NOT_LOADED: (
        "This request is serviced by a module of DCGM that is not currently loaded"
    ),
    DCGM_ST_IN_USE: (
        "The requested operation could not be completed because the affected resource is in use"
    ),
    DCGM_ST_PROFILING_NOT_SUPPORTED: "Profiling is not supported for this group of GPUs or GPU",
    DCGM_ST_PAUSED: "The hostengine and all modules are paused",
}


class DCGMError(Exception):
    """DCGM's exception: `.value` is the DCGM_ST_* code; DCGMError(code) is its subclass."""

    _valClassMapping: ClassVar[dict[int, type]] = {}

    def __new__(cls, value: int):
        if cls is DCGMError:
            cls = DCGMError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.info = None
        obj.value = value
        return obj

    def __init__(self, value: int | None = None) -> None:
        super().__init__(self.value)

    def __str__(self) -> str:
        msg = _MESSAGES.get(self.value, f"DCGM Error with code {self.value}")
        return f"{msg}: '{self.info}'" if self.info is not None else msg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DCGMError) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def SetAdditionalInfo(self, msg: str) -> None:
        self.info = msg


def _make_error_classes() -> None:
    module = globals()
    for name in [n for n in module if n.startswith("DCGM_ST_")]:
        code = module[name]
        words = name.removeprefix("DCGM_ST_").split("_")
        class_name = "DCGMError_" + "".join(w.capitalize() for w in words)

        def new(cls, value: int = code):
            return DCGMError.__new__(cls, value)

        cls = type(class_name, (DCGMError,), {"__new__": new})
        module[class_name] = cls
        DCGMError._valClassMapping[code] = cls


_make_error_classes()


def dcgmExceptionClass(error_code: int) -> type | None:
    return DCGMError._valClassMapping.get(error_code)


def _dcgmCheckReturn(ret: int) -> int:
    if ret != DCGM_ST_OK:
        raise DCGMError(ret)
    return ret


def _dcgmInit(libDcgmPath: str | None = None) -> None:
    """Load libdcgm.so.4: LIBRARY_NOT_FOUND when the fake plays a machine without it."""
    engine = fake_dcgm_engine.ENGINE
    engine.call("_dcgmInit")
    if not engine.library:
        _dcgmCheckReturn(DCGM_ST_LIBRARY_NOT_FOUND)


class c_dcgmConnectV2Params_v2:
    def __init__(self) -> None:
        self.version = 0
        self.persistAfterDisconnect = 0
        self.timeoutMs = 0
        self.addressIsUnixSocket = 0


c_dcgmConnectV2Params_version = 2


class c_dcgmDeviceIdentifiers_v1:
    def __init__(self, **kwargs: object) -> None:
        self.__dict__.update(kwargs)


class c_dcgmDeviceAttributes_v3:
    def __init__(self, identifiers: c_dcgmDeviceIdentifiers_v1) -> None:
        self.version = 3
        self.identifiers = identifiers


class c_dcgmNvLinkGpuLinkStatus_v4:
    def __init__(self, entityId: int, linkState: list[int]) -> None:
        self.entityId = entityId
        self.linkState = linkState


class c_dcgmNvLinkStatus_v4:
    def __init__(self, gpus: list[c_dcgmNvLinkGpuLinkStatus_v4]) -> None:
        self.version = 4
        self.numGpus = len(gpus)
        self.gpus = gpus
        self.numNvSwitches = 0
        self.nvSwitches: list[object] = []


class c_dcgmFieldValue_v1:
    """A raw field value: fieldType is the type letter's ordinal, value a union."""

    class _Union:
        def __init__(self) -> None:
            self.i64 = 0
            self.dbl = 0.0
            self.str = ""

    def __init__(self) -> None:
        self.version = 1
        self.fieldId = 0
        self.fieldType = ord("i")
        self.status = DCGM_ST_OK
        self.ts = 0
        self.value = self._Union()
