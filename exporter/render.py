"""Exposition bytes from samples: Prometheus text 0.0.4 and OpenMetrics 1.0.0.

The output is byte for byte what prometheus_client's writers produce for the same families
(tests/test_render.py compares random series sets with them), at a fraction of the cost. What
makes a line expensive there, the series name and its escaped, sorted labels, changes only when
a series appears, so it is built once and kept in a `Layout` while the series set stays the
same; rendering a snapshot then formats values and joins strings.

The series set is told by *key lists* (`series_keys`): `Renderer.layout` reuses its layout when
it is handed the very same list objects as last time (the sampler keeps a source's list while
its series do not change), and otherwise compares them, so a caller that cannot keep them is
still right, only slower.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from exporter.catalog import FAMILIES, Kind, MetricFamily
from exporter.samples import AnySample, HistogramSample, Labels, Sample

__all__ = [
    "Format",
    "Layout",
    "Renderer",
    "SeriesKey",
    "Variant",
    "flat_values",
    "format_value",
    "render",
    "series_keys",
]

#: What identifies a series: (name, labels), and for a histogram also its bucket bounds.
SeriesKey = tuple


class Format(StrEnum):
    """The exposition formats a scrape can ask for."""

    TEXT = "text"  # Prometheus text format 0.0.4
    OPENMETRICS = "openmetrics"  # OpenMetrics 1.0.0


#: One way of answering a scrape: a format, plain or gzipped.
Variant = tuple[Format, bool]

_OM_EOF = "# EOF\n"


def series_keys(samples: Iterable[AnySample]) -> list[SeriesKey]:
    """The key of every sample, in order (two samples with equal keys render the same lines)."""
    return [
        (s.name, s.labels)
        if type(s) is Sample
        else (s.name, s.labels, tuple(b for b, _ in s.buckets))  # type: ignore[union-attr]
        for s in samples
    ]


def format_value(value: float) -> str:
    """A sample value as prometheus_client writes it (Go's float formatting)."""
    value = float(value)
    if -1e6 < value < 1e6:
        return repr(value)
    if value != value:
        return "NaN"
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


@dataclass(frozen=True, slots=True)
class Layout:
    """The fixed part of both expositions of one series set.

    Line i of a body is `leads[i]` (the family's header lines when i starts a family, then the
    series name and labels and a space), the value at `order[i]` of the snapshot's flat values
    (`flat_values`), and a newline.
    """

    text_leads: tuple[str, ...]
    om_leads: tuple[str, ...]
    order: tuple[int, ...]
    #: Per histogram sample, in sample order: whether it has _count and _sum lines.
    histogram_totals: tuple[bool, ...]
    series: int


def flat_values(samples: Sequence[AnySample], layout: Layout) -> list[float]:
    """Every value of `samples` in sample order: a sample's value, or a histogram's bucket counts
    then (when its layout has them) count and sum."""
    if not layout.histogram_totals:
        return [s.value for s in samples]  # type: ignore[union-attr]
    out: list[float] = []
    totals = iter(layout.histogram_totals)
    for s in samples:
        if type(s) is Sample:
            out.append(s.value)
        else:
            assert isinstance(s, HistogramSample)
            out.extend(count for _, count in s.buckets)
            if next(totals):
                out.append(s.buckets[-1][1])
                out.append(s.sum)
    return out


def render(layout: Layout, values: Sequence[float], fmt: Format) -> bytes:
    """The body in `fmt` of a snapshot whose flat values are `values`."""
    leads = layout.om_leads if fmt is Format.OPENMETRICS else layout.text_leads
    fv = format_value
    lines = [f"{lead}{fv(values[i])}\n" for lead, i in zip(leads, layout.order, strict=True)]
    if fmt is Format.OPENMETRICS:
        lines.append(_OM_EOF)
    return "".join(lines).encode()


class Renderer:
    """Builds layouts, keeping each series' name-and-labels string while the series exists.

    One renderer serves one exporter: its constant labels go on every series. Not thread-safe;
    the sampler calls it from one cycle at a time.
    """

    def __init__(
        self, const_labels: Labels = (), families: Mapping[str, MetricFamily] | None = None
    ) -> None:
        self._const_labels = tuple(const_labels)
        self._families = FAMILIES if families is None else families
        self._rank = {name: i for i, name in enumerate(self._families)}
        self._headers: dict[str, tuple[str, str]] = {}
        self._prefixes: dict[SeriesKey, tuple[str, ...]] = {}
        self._parts: list[list[SeriesKey]] = []
        self._layout: Layout | None = None

    def layout(self, parts: Sequence[list[SeriesKey]]) -> Layout:
        """The layout of the series whose keys are `parts` concatenated, in that order.

        Raises ValueError for a family that is not in the catalog."""
        layout = self.current(parts)
        if layout is None:
            layout = self._layout = self._build([key for part in parts for key in part])
            self._parts = list(parts)
        return layout

    def current(self, parts: Sequence[list[SeriesKey]]) -> Layout | None:
        """The last layout when `parts` are the same series as last time, else None (cheap)."""
        previous = self._parts
        if self._layout is None or len(parts) != len(previous):
            return None
        if not all(a is b or a == b for a, b in zip(parts, previous, strict=True)):
            return None
        self._parts = list(parts)  # keep the newest objects for the next identity test
        return self._layout

    def _build(self, keys: list[SeriesKey]) -> Layout:
        unknown = {key[0] for key in keys} - self._families.keys()
        if unknown:
            raise ValueError(f"samples for families missing from the catalog: {sorted(unknown)}")
        old, prefixes = self._prefixes, {}
        # family → its series in sample order, as (line prefixes, index of the first value)
        by_family: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        totals: list[bool] = []
        flat = 0
        for key in keys:
            series = old.get(key) or self._prefixes_of(key)
            prefixes[key] = series
            if len(key) == 3:  # a histogram: buckets, then _count and _sum unless dropped
                totals.append(len(series) > len(key[2]))
            by_family.setdefault(key[0], []).append((series, flat))
            flat += len(series)
        self._prefixes = prefixes
        leads: list[str] = []
        order: list[int] = []
        starts: list[tuple[int, str]] = []  # (line, family) where each family begins
        for name in sorted(by_family, key=self._rank.__getitem__):
            starts.append((len(leads), name))
            for series, first in by_family[name]:
                leads.extend(series)
                order.extend(range(first, first + len(series)))
        text_leads, om_leads = list(leads), leads
        for line, name in starts:
            text_header, om_header = self._header(name)
            text_leads[line] = text_header + leads[line]
            om_leads[line] = om_header + leads[line]
        return Layout(tuple(text_leads), tuple(om_leads), tuple(order), tuple(totals), len(keys))

    def _prefixes_of(self, key: SeriesKey) -> tuple[str, ...]:
        """`name{labels} ` of each line a series renders to, as prometheus_client writes it."""
        name, labels = key[0], key[1]
        fam = self._families[name]
        names = [*(k for k, _ in self._const_labels), *fam.labels]
        values = [*(v for _, v in self._const_labels), *(v for _, v in labels)]
        label_map = dict(zip(names, values, strict=False))
        if len(key) == 2:
            return (_line_prefix(name, label_map),)
        bounds = key[2]
        out = [_line_prefix(f"{name}_bucket", {**label_map, "le": _le(b)}) for b in bounds]
        if bounds and float(_le(bounds[0])) >= 0:  # no _count and _sum with negative buckets
            out.append(_line_prefix(f"{name}_count", label_map))
            out.append(_line_prefix(f"{name}_sum", label_map))
        return tuple(out)

    def _header(self, name: str) -> tuple[str, str]:
        header = self._headers.get(name)
        if header is None:
            header = self._headers[name] = _headers(self._families[name])
        return header


def _line_prefix(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return f"{name} "
    pairs = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{pairs}}} "


def _headers(fam: MetricFamily) -> tuple[str, str]:
    """The HELP and TYPE (and UNIT) lines of a family in text and in OpenMetrics."""
    kind = str(fam.kind)
    text_help = fam.help.replace("\\", "\\\\").replace("\n", "\\n")
    text = f"# HELP {fam.name} {text_help}\n# TYPE {fam.name} {kind}\n"
    om_name = fam.base_name if fam.kind is Kind.COUNTER else fam.name
    if fam.unit and not om_name.endswith("_" + fam.unit):
        om_name += "_" + fam.unit
    om = f"# HELP {om_name} {_escape_label_value(fam.help)}\n# TYPE {om_name} {kind}\n"
    if fam.unit:
        om += f"# UNIT {om_name} {fam.unit}\n"
    return text, om
