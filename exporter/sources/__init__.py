"""Sources: one module per backend, each turning its library's answers into plain samples.

A source never formats exposition text and never knows about HTTP. The sampler calls
`collect()` from a worker thread, once per cycle, with a timeout; a source may block (NVML and
DCGM calls do) but must not keep state that a skipped cycle would corrupt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from exporter.samples import AnySample


class SourceUnavailable(Exception):
    """The source cannot run here (library missing, no driver, no device); the message says why
    in one line, and how to fix it where that is known."""


@runtime_checkable
class Source(Protocol):
    """What the sampler needs from a backend."""

    #: Short stable name, used as the `source` label of the exporter_* families.
    name: str

    def collect(self) -> Iterable[AnySample]:
        """Read the backend once and return its samples. Raising marks the source down."""
        ...

    def close(self) -> None:
        """Release the backend (called once at shutdown)."""
        ...
