"""One nvmlDeviceGetFieldValues request, built once and asked every cycle.

pynvml's `nvmlDeviceGetFieldValues` allocates a fresh array of `c_nvmlFieldValue_t` on every call,
sets each entry's ids through `_PrintableStructure.__setattr__`, and every attribute read of the
answer goes through its `__getattribute__` (a bytes check per access): on an 8-GPU HGX board with
18 NVLink links that was over half of the NVML source's time per cycle. Here the request array is
filled once, the answer is read through a plain ctypes view of the same layout, and the call is
the library's own function pointer, looked up by pynvml (its lock, its FunctionNotFound).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import pynvml

_Field = tuple[int, int]  # (fieldId, scopeId)


class PlainFieldValue(ctypes.Structure):
    """`c_nvmlFieldValue_t` without pynvml's printable wrapper: same fields, same layout."""

    _fields_ = list(pynvml.c_nvmlFieldValue_t._fields_)


assert ctypes.sizeof(PlainFieldValue) == ctypes.sizeof(pynvml.c_nvmlFieldValue_t)

_READ_VALUE = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: lambda v: v.dVal,
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: lambda v: v.uiVal,
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: lambda v: v.ulVal,
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: lambda v: v.ullVal,
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: lambda v: v.sllVal,
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: lambda v: v.siVal,
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: lambda v: v.usVal,
}


def field_value(fv: Any) -> float:
    """The number in an nvmlFieldValue_t (pynvml's or a plain view), read by its valueType."""
    read = _READ_VALUE.get(fv.valueType)
    if read is None:
        raise ValueError(f"field {fv.fieldId}: unknown NVML value type {fv.valueType}")
    return float(read(fv.value))


def _function_pointer() -> Any | None:
    """The library's nvmlDeviceGetFieldValues, or None if this pynvml has no lookup to lend."""
    lookup = getattr(pynvml, "_nvmlGetFunctionPointer", None)
    return lookup("nvmlDeviceGetFieldValues") if lookup is not None else None


class FieldRequest:
    """The same (fieldId, scopeId) entries asked of one GPU each cycle."""

    def __init__(self, fields: Sequence[_Field]) -> None:
        self.fields = list(fields)
        self._array = (PlainFieldValue * len(self.fields))()
        for entry, (field_id, scope_id) in zip(self._array, self.fields, strict=True):
            entry.fieldId, entry.scopeId = field_id, scope_id

    def __len__(self) -> int:
        return len(self.fields)

    def ask(self, handle: Any) -> Sequence[PlainFieldValue]:
        """Every entry's answer (its own nvmlReturn each); raises NVMLError if the call fails.

        The driver reads fieldId and scopeId and fills in the rest, so the array is reused as
        is; callers name an entry by its position in `fields`, never by what the answer says.
        """
        if not self.fields:
            return []
        fn = _function_pointer()
        if fn is None:  # a pynvml without the private lookup: its public call, viewed plainly
            values = pynvml.nvmlDeviceGetFieldValues(handle, self.fields)
            return (PlainFieldValue * len(self.fields)).from_buffer(values)
        ret = fn(handle, ctypes.c_int32(len(self.fields)), ctypes.byref(self._array))
        if ret != pynvml.NVML_SUCCESS:
            raise pynvml.NVMLError(ret)
        return self._array
