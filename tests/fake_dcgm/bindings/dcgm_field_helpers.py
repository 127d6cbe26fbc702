"""Fake `dcgm_field_helpers`: raw field values into python-friendly DcgmFieldValue objects,
collected per GPU and field as DcgmFieldValueTimeSeries, as the real module does."""

from __future__ import annotations

from typing import Any

import dcgm_agent
import dcgm_fields
import dcgm_structs
import dcgmvalue


class DcgmFieldValue:
    """One value: `.value`, `.ts` (usec), `.fieldId`, `.fieldType`, and `.isBlank`."""

    def __init__(self, rawValue: Any) -> None:
        if not isinstance(rawValue, dcgm_structs.c_dcgmFieldValue_v1):
            raise Exception(f"Unexpected rawValue type {type(rawValue)}")
        self.ts = rawValue.ts
        self.fieldId = rawValue.fieldId
        self.fieldType = chr(rawValue.fieldType)
        self.isBlank = False
        self.value: Any = None
        if rawValue.status != dcgm_structs.DCGM_ST_OK:
            self.isBlank = True
            return
        if self.fieldType == dcgm_fields.DCGM_FT_DOUBLE:
            self.value = float(rawValue.value.dbl)
            self.isBlank = dcgmvalue.DCGM_FP64_IS_BLANK(self.value)
        elif self.fieldType in (dcgm_fields.DCGM_FT_INT64, dcgm_fields.DCGM_FT_TIMESTAMP):
            self.value = int(rawValue.value.i64)
            self.isBlank = dcgmvalue.DCGM_INT64_IS_BLANK(self.value)
        elif self.fieldType == dcgm_fields.DCGM_FT_STRING:
            self.value = str(rawValue.value.str)
            self.isBlank = dcgmvalue.DCGM_STR_IS_BLANK(self.value)
        else:
            raise Exception(f"Unhandled fieldType: {self.fieldType}")


class DcgmFieldValueTimeSeries:
    def __init__(self) -> None:
        self.values: list[DcgmFieldValue] = []

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, key: int) -> DcgmFieldValue:
        return self.values[key]

    def InsertValue(self, value: DcgmFieldValue) -> None:
        if not self.values or value.ts >= self.values[-1].ts:
            self.values.append(value)
            return
        for i, existing in enumerate(self.values):
            if value.ts < existing.ts:
                self.values.insert(i, value)
                return


def _values_callback(gpuId: int, values: list, numValues: int, userData: Any) -> int:
    userData._ProcessValues(gpuId, values[0:numValues])
    return 0


class DcgmFieldValueCollection:
    """`.values[gpuId][fieldId]` is a DcgmFieldValueTimeSeries."""

    def __init__(self, handle: int, groupId: int) -> None:
        self.values: dict[int, dict[int, DcgmFieldValueTimeSeries]] = {}
        self._handle = handle
        self._groupId = groupId
        self._numValuesSeen = 0

    def _ProcessValues(self, gpuId: int, values: list) -> None:
        self._numValuesSeen += len(values)
        per_gpu = self.values.setdefault(gpuId, {})
        for raw in values:
            value = DcgmFieldValue(raw)
            per_gpu.setdefault(value.fieldId, DcgmFieldValueTimeSeries()).InsertValue(value)

    def GetLatestValues(self, fieldGroup: Any) -> None:
        ret = dcgm_agent.dcgmGetLatestValues(
            self._handle, self._groupId, fieldGroup.fieldGroupId, _values_callback, self
        )
        dcgm_structs._dcgmCheckReturn(ret)

    def EmptyValues(self) -> None:
        self.values = {}
        self._numValuesSeen = 0
