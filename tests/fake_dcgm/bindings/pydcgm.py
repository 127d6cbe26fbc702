"""Fake `pydcgm`: the object API over dcgm_agent, with the classes and methods of the real one
(DcgmHandle.py, DcgmSystem.py, DcgmGroup.py, DcgmFieldGroup.py in NVIDIA/DCGM testing/python3)
that the exporter calls. Errors come from dcgm_agent as DCGMError, as in the real bindings.
"""

from __future__ import annotations

import contextlib
from typing import Any

import dcgm_agent
import dcgm_field_helpers
import dcgm_structs


class DcgmException(Exception):
    pass


class DcgmHandle:
    """A connection to a hostengine (ipAddress) or an embedded one (ipAddress None)."""

    def __init__(
        self,
        handle: Any = None,
        ipAddress: str | None = None,
        opMode: int = dcgm_structs.DCGM_OPERATION_MODE_AUTO,
        persistAfterDisconnect: bool = False,
        unixSocketPath: str | None = None,
        timeoutMs: int = 0,
    ) -> None:
        self._handleCreated = False
        self._persistAfterDisconnect = persistAfterDisconnect
        if handle is not None:
            self.handle = handle
            return
        self._ipAddress = ipAddress
        if ipAddress is not None and unixSocketPath is not None:
            raise dcgm_structs.DCGMError(dcgm_structs.DCGM_ST_BADPARAM)
        dcgm_structs._dcgmInit()
        dcgm_agent.dcgmInit()
        if ipAddress is None and unixSocketPath is None:
            self.handle = dcgm_agent.dcgmStartEmbedded(opMode)
            self.isEmbedded = True
            self._handleCreated = True
            return
        params = dcgm_structs.c_dcgmConnectV2Params_v2()
        params.version = dcgm_structs.c_dcgmConnectV2Params_version
        params.timeoutMs = timeoutMs
        params.persistAfterDisconnect = 1 if persistAfterDisconnect else 0
        params.addressIsUnixSocket = 0 if ipAddress is not None else 1
        self.handle = dcgm_agent.dcgmConnect_v2(ipAddress or unixSocketPath, params)
        self.isEmbedded = False
        self._handleCreated = True

    def __del__(self) -> None:
        if getattr(self, "_handleCreated", False):
            self.Shutdown()

    def GetSystem(self) -> DcgmSystem:
        return DcgmSystem(self)

    def Shutdown(self) -> None:
        if not self._handleCreated:
            return
        try:
            if self.isEmbedded:
                dcgm_agent.dcgmStopEmbedded(self.handle)
            else:
                dcgm_agent.dcgmDisconnect(self.handle)
        except AttributeError:
            pass
        self._handleCreated = False
        self.handle = None

    def GetIpAddress(self) -> str | None:
        return self._ipAddress


class DcgmSystemDiscovery:
    def __init__(self, dcgmHandle: DcgmHandle) -> None:
        self._dcgmHandle = dcgmHandle

    def GetAllGpuIds(self) -> list[int]:
        return dcgm_agent.dcgmGetAllDevices(self._dcgmHandle.handle)

    def GetAllSupportedGpuIds(self) -> list[int]:
        return dcgm_agent.dcgmGetAllSupportedDevices(self._dcgmHandle.handle)

    def GetGpuAttributes(self, gpuId: int) -> Any:
        return dcgm_agent.dcgmGetDeviceAttributes(self._dcgmHandle.handle, gpuId)

    def GetNvLinkLinkStatus(self) -> Any:
        return dcgm_agent.dcgmGetNvLinkLinkStatus(self._dcgmHandle.handle)

    def GetGpuStatus(self, gpuId: int) -> int:
        return dcgm_agent.dcgmGetGpuStatus(self._dcgmHandle.handle, gpuId)


class DcgmSystem:
    def __init__(self, dcgmHandle: DcgmHandle) -> None:
        self._dcgmHandle = dcgmHandle
        self.discovery = DcgmSystemDiscovery(dcgmHandle)

    def UpdateAllFields(self, waitForUpdate: bool) -> None:
        ret = dcgm_agent.dcgmUpdateAllFields(self._dcgmHandle.handle, waitForUpdate)
        dcgm_structs._dcgmCheckReturn(ret)

    def GetDefaultGroup(self) -> DcgmGroup:
        return DcgmGroup(self._dcgmHandle, groupId=dcgm_structs.DCGM_GROUP_ALL_GPUS)


class DcgmGroupSamples:
    def __init__(self, dcgmHandle: DcgmHandle, groupId: int, dcgmGroup: DcgmGroup) -> None:
        self._dcgmHandle = dcgmHandle
        self._groupId = groupId
        self._dcgmGroup = dcgmGroup

    def WatchFields(
        self, fieldGroup: DcgmFieldGroup, updateFreq: int, maxKeepAge: float, maxKeepSamples: int
    ) -> None:
        ret = dcgm_agent.dcgmWatchFields(
            self._dcgmHandle.handle,
            self._groupId,
            fieldGroup.fieldGroupId,
            updateFreq,
            maxKeepAge,
            maxKeepSamples,
        )
        dcgm_structs._dcgmCheckReturn(ret)

    def UnwatchFields(self, fieldGroup: DcgmFieldGroup) -> None:
        ret = dcgm_agent.dcgmUnwatchFields(
            self._dcgmHandle.handle, self._groupId, fieldGroup.fieldGroupId
        )
        dcgm_structs._dcgmCheckReturn(ret)

    def GetLatest(self, fieldGroup: DcgmFieldGroup) -> Any:
        """A DcgmFieldValueCollection: `.values[gpuId][fieldId][-1].value`."""
        dfvc = dcgm_field_helpers.DcgmFieldValueCollection(self._dcgmHandle.handle, self._groupId)
        dfvc.GetLatestValues(fieldGroup)
        return dfvc


class DcgmGroup:
    def __init__(
        self,
        dcgmHandle: DcgmHandle,
        groupId: int | None = None,
        groupName: str | None = None,
        groupType: int = dcgm_structs.DCGM_GROUP_EMPTY,
    ) -> None:
        if groupId is None and groupName is None:
            raise DcgmException("Either groupId or groupName is required")
        if groupId is None:
            raise DcgmException("the fake DCGM only has the default all-GPUs group")
        self._dcgmHandle = dcgmHandle
        self._groupId = groupId
        self.name = groupName
        self.samples = DcgmGroupSamples(dcgmHandle, groupId, self)


class DcgmFieldGroup:
    """A named group of field ids in the hostengine (deleted with Delete())."""

    def __init__(
        self,
        dcgmHandle: DcgmHandle,
        name: str = "",
        fieldIds: list[int] | None = None,
        fieldGroupId: Any = None,
    ) -> None:
        self.name = name
        self.fieldIds = list(fieldIds or [])
        self._dcgmHandle: DcgmHandle | None = dcgmHandle
        self.fieldGroupId = None
        self.fieldGroupId = dcgm_agent.dcgmFieldGroupCreate(dcgmHandle.handle, self.fieldIds, name)
        self.wasCreated = True

    def Delete(self) -> None:
        if self._dcgmHandle is not None and self.fieldGroupId is not None:
            dcgm_agent.dcgmFieldGroupDestroy(self._dcgmHandle.handle, self.fieldGroupId)
        self.fieldGroupId = None
        self._dcgmHandle = None

    def __del__(self) -> None:
        if getattr(self, "_dcgmHandle", None) is not None:
            with contextlib.suppress(dcgm_structs.DCGMError):
                self.Delete()
