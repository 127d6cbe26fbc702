"""Snapshots: the immutable result of one collection cycle, rendered once into every format.

Rendering goes through prometheus_client's own text and OpenMetrics writers: the snapshot
yields metric families like any custom collector, so escaping and format details are the
library's, not ours. A scrape only picks the bytes that match its Accept headers.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE_OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.catalog import FAMILIES, Kind, MetricFamily
from exporter.samples import AnySample, HistogramSample, Labels, Sample

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "Rendered",
    "Snapshot",
    "SourceState",
    "render",
    "wants_openmetrics",
]

CONTENT_TYPE_TEXT = CONTENT_TYPE_PLAIN_0_0_4
_GZIP_LEVEL = 6


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the sampler knows about one source after a cycle."""

    name: str
    up: bool
    last_success: float | None  # monotonic time of the last successful collection
    last_duration: float
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One exposition format, plain and gzipped."""

    content_type: str
    body: bytes
    gzipped: bytes


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape can return, computed once per cycle and never mutated."""

    collected_at: float  # unix time
    collected_monotonic: float
    sources: Mapping[str, SourceState]
    text: Rendered
    openmetrics: Rendered
    series: int
    samples: tuple[AnySample, ...] = field(repr=False)

    def for_accept(self, accept: str) -> Rendered:
        """The rendering a request with this Accept header should get."""
        return self.openmetrics if wants_openmetrics(accept) else self.text


def wants_openmetrics(accept: str) -> bool:
    """True when the Accept header lists OpenMetrics text (Prometheus's default scrape)."""
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media != "application/openmetrics-text":
            continue
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            continue
    return False


class _SampleCollector:
    """Turns samples into prometheus_client metric families, in catalog order."""

    def __init__(self, samples: Iterable[AnySample], const_labels: Labels) -> None:
        self._by_family: dict[str, list[AnySample]] = {}
        for sample in samples:
            self._by_family.setdefault(sample.name, []).append(sample)
        unknown = self._by_family.keys() - FAMILIES.keys()
        if unknown:
            raise ValueError(f"samples for families missing from the catalog: {sorted(unknown)}")
        self._const_names = [k for k, _ in const_labels]
        self._const_values = [v for _, v in const_labels]

    def collect(self) -> Iterator[Metric]:
        for name, fam in FAMILIES.items():
            samples = self._by_family.get(name)
            if samples:
                yield self._family(fam, samples)

    def _family(self, fam: MetricFamily, samples: list[AnySample]) -> Metric:
        names = [*self._const_names, *fam.labels]
        metric: Metric
        if fam.kind is Kind.COUNTER:
            metric = CounterMetricFamily(fam.base_name, fam.help, labels=names, unit=fam.unit)
        elif fam.kind is Kind.HISTOGRAM:
            metric = HistogramMetricFamily(fam.name, fam.help, labels=names, unit=fam.unit)
        else:
            metric = GaugeMetricFamily(fam.name, fam.help, labels=names, unit=fam.unit)
        for s in samples:
            values = [*self._const_values, *(v for _, v in s.labels)]
            if isinstance(s, HistogramSample):
                assert isinstance(metric, HistogramMetricFamily)
                buckets = [(_le(le), count) for le, count in s.buckets]
                metric.add_metric(values, buckets, s.sum)
            else:
                assert isinstance(s, Sample)
                metric.add_metric(values, s.value)
        return metric


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def render(
    samples: Iterable[AnySample],
    *,
    const_labels: Labels = (),
    sources: Mapping[str, SourceState] | None = None,
    collected_at: float,
    collected_monotonic: float,
) -> Snapshot:
    """Render samples into a snapshot holding the text and OpenMetrics bytes (plain and gzip)."""
    samples = tuple(samples)
    collector = _SampleCollector(samples, const_labels)
    text = generate_text(collector)  # type: ignore[arg-type]
    om = generate_openmetrics(collector)
    return Snapshot(
        collected_at=collected_at,
        collected_monotonic=collected_monotonic,
        sources=dict(sources or {}),
        text=Rendered(CONTENT_TYPE_TEXT, text, gzip.compress(text, _GZIP_LEVEL, mtime=0)),
        openmetrics=Rendered(CONTENT_TYPE_OPENMETRICS, om, gzip.compress(om, _GZIP_LEVEL, mtime=0)),
        series=len(samples),
        samples=samples,
    )
