"""Durations as every flag and scenario key writes them: `1`, `1.5`, `500ms`, `2s`, `1m`, `1h`."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+))(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
EXAMPLES = "like 1, 0.5, 500ms, 2s, 1m"


def seconds(text: str) -> float:
    """Seconds (any sign) from `1`, `1.5`, `500ms`, `2s`, `1m` or `1h` (a bare number is
    seconds); ValueError when it is not a duration."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"invalid duration {text!r}: use seconds or a unit, {EXAMPLES}")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(value):
        raise ValueError(f"invalid duration {text!r}: too large")
    return value


def parse_duration(text: str, *, zero: bool = False) -> float:
    """A positive duration in seconds (or 0 too with `zero`); ValueError saying what is wrong."""
    value = seconds(text)
    if value < 0 or (value == 0 and not zero):
        need = "not be negative" if zero else "be greater than 0"
        raise ValueError(f"invalid duration {text!r}: it must {need} ({EXAMPLES})")
    return value
