"""The process_* figures of the exporter's own process (CPU seconds, resident and virtual
memory, open and maximum file descriptors, start time), as every Prometheus exporter has them.

prometheus_client's ProcessCollector reads them (from /proc: on other systems it yields nothing
and so does this); they are turned into catalog samples so that they go through the sampler and
the one exposition path like every other family.
"""

from __future__ import annotations

from prometheus_client import ProcessCollector

from exporter import catalog
from exporter.samples import Sample

_BY_SAMPLE_NAME = {
    family.name: family
    for family in (
        catalog.PROCESS_CPU_SECONDS,
        catalog.PROCESS_RESIDENT_MEMORY,
        catalog.PROCESS_VIRTUAL_MEMORY,
        catalog.PROCESS_START_TIME,
        catalog.PROCESS_OPEN_FDS,
        catalog.PROCESS_MAX_FDS,
    )
}


class ProcessMetrics:
    """Reads this process's figures on each call to `samples()` (a few /proc reads)."""

    def __init__(self) -> None:
        self._collector = ProcessCollector(registry=None)

    def samples(self) -> list[Sample]:
        out = []
        for metric in self._collector.collect():
            for sample in metric.samples:
                family = _BY_SAMPLE_NAME.get(sample.name)
                if family is not None:
                    out.append(family.sample(sample.value))
        return out
