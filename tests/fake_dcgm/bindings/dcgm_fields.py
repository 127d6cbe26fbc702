"""Fake `dcgm_fields`: the field numbers under the names of the DCGM release the fake plays.

`names 4.6` (the default): the unit-suffixed names DCGM 4.6 introduced resolve, and the old
names still resolve with a DeprecationWarning, as in the real 4.6 bindings. `names old`: only
the old names exist (DCGM 3 and 4.x before 4.6). Every other name is looked up in the engine's
field table and exists in both.
"""

from __future__ import annotations

import warnings

import fake_dcgm_engine

DCGM_FT_BINARY = "b"
DCGM_FT_DOUBLE = "d"
DCGM_FT_INT64 = "i"
DCGM_FT_STRING = "s"
DCGM_FT_TIMESTAMP = "t"

DCGM_FE_NONE = 0
DCGM_FE_GPU = 1

DCGM_CLOCKS_EVENT_REASON_GPU_IDLE = 0x1
DCGM_CLOCKS_EVENT_REASON_SW_POWER_CAP = 0x4
DCGM_CLOCKS_EVENT_REASON_SW_THERMAL = 0x20

_BY_NAME = {
    name: number
    for number, (_, new, olds) in fake_dcgm_engine.FIELDS.items()
    for name in (new, *olds)
}


def __getattr__(name: str) -> int:
    number = _BY_NAME.get(name)
    if number is None:
        raise AttributeError(f"module 'dcgm_fields' has no attribute {name!r}")
    mode = fake_dcgm_engine.ENGINE.names
    if mode == "old" and name in fake_dcgm_engine.NEW_ONLY:
        raise AttributeError(f"module 'dcgm_fields' has no attribute {name!r}")
    if mode == "4.6" and name in fake_dcgm_engine.RENAMED:
        warnings.warn(
            f"{name} is deprecated, use {fake_dcgm_engine.RENAMED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
    return number
