"""Snapshots: the immutable result of one collection cycle, and its exposition bytes.

Rendering goes through prometheus_client's own text and OpenMetrics writers: the snapshot
yields metric families like any custom collector, so escaping and format details are the
library's, not ours. Those writers escape label values character by character (about 10 ms for
the text format and 20 ms for OpenMetrics of an 8-GPU fleet, see bench/scrape.py), so a
snapshot renders only the variants scrapers ask for, each at most once.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

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
    "CONTENT_TYPES",
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "Format",
    "Snapshot",
    "SourceState",
    "Variant",
    "format_for_accept",
    "make_snapshot",
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


class Format(StrEnum):
    """The exposition formats a scrape can ask for."""

    TEXT = "text"  # Prometheus text format 0.0.4
    OPENMETRICS = "openmetrics"  # OpenMetrics 1.0.0


#: One way of answering a scrape: a format, plain or gzipped.
Variant = tuple[Format, bool]

CONTENT_TYPES = {Format.TEXT: CONTENT_TYPE_TEXT, Format.OPENMETRICS: CONTENT_TYPE_OPENMETRICS}


class Snapshot:
    """Everything a scrape can return from one cycle; immutable once built.

    Bodies are rendered at most once per variant: the sampler renders the variants scrapers
    have been asking for before it publishes the snapshot, so a scrape normally only picks
    bytes; a variant nobody asked for yet is rendered on its first request, then memoized.
    """

    def __init__(
        self,
        samples: Iterable[AnySample],
        *,
        const_labels: Labels = (),
        sources: Mapping[str, SourceState] | None = None,
        collected_at: float,
        collected_monotonic: float,
    ) -> None:
        self.samples: tuple[AnySample, ...] = tuple(samples)
        self.series = len(self.samples)
        self.sources: Mapping[str, SourceState] = dict(sources or {})
        self.collected_at = collected_at
        self.collected_monotonic = collected_monotonic
        self._collector = _SampleCollector(self.samples, const_labels)
        self._bodies: dict[Variant, bytes] = {}
        self._lock = threading.Lock()

    def has(self, variant: Variant) -> bool:
        """True when `variant` is already rendered (a scrape can answer without work)."""
        return variant in self._bodies

    def body(self, fmt: Format, gzipped: bool = False) -> bytes:
        """The exposition bytes in `fmt`, gzipped or not (rendered on first use)."""
        key = (fmt, gzipped)
        body = self._bodies.get(key)
        if body is None:
            with self._lock:
                body = self._bodies.get(key)
                if body is None:
                    plain = self._bodies.get((fmt, False))
                    if plain is None:
                        plain = self._bodies[(fmt, False)] = self._render(fmt)
                    body = gzip.compress(plain, _GZIP_LEVEL, mtime=0) if gzipped else plain
                    self._bodies[key] = body
        return body

    def prerender(self, variants: Iterable[Variant]) -> None:
        """Render each of `variants` now (the sampler calls this off the event loop)."""
        for fmt, gzipped in variants:
            self.body(fmt, gzipped)

    def _render(self, fmt: Format) -> bytes:
        if fmt is Format.OPENMETRICS:
            return generate_openmetrics(self._collector)
        return generate_text(self._collector)  # type: ignore[arg-type]


def format_for_accept(accept: str) -> Format:
    """The format a request with this Accept header should get."""
    return Format.OPENMETRICS if wants_openmetrics(accept) else Format.TEXT


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


def make_snapshot(
    samples: Iterable[AnySample],
    *,
    const_labels: Labels = (),
    sources: Mapping[str, SourceState] | None = None,
    collected_at: float,
    collected_monotonic: float,
    prerender: Iterable[Variant] = (),
) -> Snapshot:
    """A snapshot of `samples` with `prerender` variants already rendered."""
    snapshot = Snapshot(
        samples,
        const_labels=const_labels,
        sources=sources,
        collected_at=collected_at,
        collected_monotonic=collected_monotonic,
    )
    snapshot.prerender(prerender)
    return snapshot
