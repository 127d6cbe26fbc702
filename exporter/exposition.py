"""Snapshots: the immutable result of one collection cycle, and its exposition bytes.

A snapshot keeps its samples and the layout of its series set (`exporter.render`); a body is
rendered when it is first needed, at most once per variant (format, gzip): the sampler renders
ahead the variants a scraper is expected to ask for while the snapshot is current, and a scrape
for any other one renders it on the spot. Either way a scrape gets the bytes of the latest
complete snapshot and never reaches a source.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE_OPENMETRICS

from exporter.render import Format, Layout, Renderer, Variant, flat_values, render, series_keys
from exporter.samples import AnySample, Labels

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
#: zlib level 1: a quarter of level 6's time for 14% more bytes on the wire (bench/render.py).
GZIP_LEVEL = 1


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the sampler knows about one source after a cycle."""

    name: str
    up: bool
    last_success: float | None  # monotonic time of the last successful collection
    last_duration: float
    last_error: str = ""


CONTENT_TYPES = {Format.TEXT: CONTENT_TYPE_TEXT, Format.OPENMETRICS: CONTENT_TYPE_OPENMETRICS}


class Snapshot:
    """Everything a scrape can return from one cycle; immutable once built.

    `samples` must be in the order of the key lists `layout` was built from.
    """

    def __init__(
        self,
        samples: Iterable[AnySample],
        layout: Layout,
        *,
        sources: Mapping[str, SourceState] | None = None,
        collected_at: float,
        collected_monotonic: float,
    ) -> None:
        self.samples: tuple[AnySample, ...] = tuple(samples)
        self.layout = layout
        self.series = layout.series
        self.sources: Mapping[str, SourceState] = dict(sources or {})
        self.collected_at = collected_at
        self.collected_monotonic = collected_monotonic
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
                        values = flat_values(self.samples, self.layout)
                        plain = self._bodies[(fmt, False)] = render(self.layout, values, fmt)
                    body = gzip.compress(plain, GZIP_LEVEL, mtime=0) if gzipped else plain
                    self._bodies[key] = body
        return body

    def prerender(self, variants: Iterable[Variant]) -> None:
        """Render each of `variants` now (the sampler calls this off the event loop)."""
        for fmt, gzipped in variants:
            self.body(fmt, gzipped)


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


def make_snapshot(
    samples: Iterable[AnySample],
    *,
    const_labels: Labels = (),
    sources: Mapping[str, SourceState] | None = None,
    collected_at: float,
    collected_monotonic: float,
    prerender: Iterable[Variant] = (),
    renderer: Renderer | None = None,
) -> Snapshot:
    """A snapshot of `samples` with `prerender` variants already rendered.

    Raises ValueError for samples of a family that is not in the catalog."""
    samples = tuple(samples)
    renderer = renderer or Renderer(const_labels)
    snapshot = Snapshot(
        samples,
        renderer.layout([series_keys(samples)]),
        sources=sources,
        collected_at=collected_at,
        collected_monotonic=collected_monotonic,
    )
    snapshot.prerender(prerender)
    return snapshot
