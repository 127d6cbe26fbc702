"""A DCGM field value as a number, or None when DCGM says it has none.

DCGM marks a missing value with sentinels at the top of the type's range (dcgmvalue.py):
int64 0x7ffffffffffffff0 (blank) and the next ones (+1 not found, +2 not supported, +3 no
permission), and for doubles 2**47 and up. dcgm-exporter publishes those as numbers
(9223372036854775794 is "not supported"); here they are absent series. pydcgm sets `isBlank`
for them, but the sentinel is checked again in case a binding version does not.
"""

from __future__ import annotations

import math
from typing import Any

INT64_BLANK = 0x7FFFFFFFFFFFFFF0
FP64_BLANK = 140737488355328.0  # 2**47
_KINDS = ("blank", "not found", "not supported", "no permission")


def number(value: Any) -> float | None:
    """The value of a pydcgm DcgmFieldValue as a float; None when blank or not a number."""
    if value is None or getattr(value, "isBlank", False):
        return None
    raw = getattr(value, "value", None)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    if isinstance(raw, int):
        return None if raw >= INT64_BLANK else float(raw)
    if math.isnan(raw) or raw >= FP64_BLANK:
        return None
    return float(raw)


def blank_kind(value: Any) -> str:
    """What a blank value means: blank, not found, not supported or no permission."""
    raw = getattr(value, "value", None)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= INT64_BLANK:
        offset = raw - INT64_BLANK
        return _KINDS[offset] if offset < len(_KINDS) else "blank"
    if isinstance(raw, float) and raw >= FP64_BLANK:
        offset = int(raw - FP64_BLANK)
        return _KINDS[offset] if 0 <= offset < len(_KINDS) else "blank"
    return "blank"


def latest(series: Any) -> Any:
    """The newest value of a pydcgm DcgmFieldValueTimeSeries (None when it is empty)."""
    if series is None:
        return None
    try:
        return series[-1]
    except (IndexError, KeyError):
        return None
