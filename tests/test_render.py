"""The hand-written renderer writes exactly what prometheus_client's own writers write.

The reference below is the exporter's former renderer: samples turned into prometheus_client
metric families, written by `generate_latest` (text 0.0.4) and the OpenMetrics
`generate_latest`. Random families, label values (unicode, quotes, backslashes, newlines,
empty), values and histograms go through both, in both formats, byte for byte.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator, Mapping

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest as reference_text
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as reference_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.utils import floatToGoString

from exporter import catalog
from exporter.catalog import Kind, MetricFamily
from exporter.exposition import Format, make_snapshot
from exporter.render import Renderer, flat_values, format_value, render, series_keys
from exporter.samples import AnySample, HistogramSample, Labels, Sample

# -- the reference: prometheus_client's writers -------------------------------------------------


class ReferenceCollector:
    """Samples as prometheus_client metric families, in catalog order (the former renderer)."""

    def __init__(self, samples, const_labels: Labels, families: Mapping[str, MetricFamily]):
        self._families = families
        self._by_family: dict[str, list[AnySample]] = {}
        for sample in samples:
            self._by_family.setdefault(sample.name, []).append(sample)
        self._const_names = [k for k, _ in const_labels]
        self._const_values = [v for _, v in const_labels]

    def collect(self) -> Iterator[Metric]:
        for name, fam in self._families.items():
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
                le = [("+Inf" if b == math.inf else repr(float(b)), c) for b, c in s.buckets]
                metric.add_metric(values, le, s.sum)  # type: ignore[call-arg]
            else:
                metric.add_metric(values, s.value)  # type: ignore[call-arg]
        return metric


def reference(samples, const_labels=(), families=catalog.FAMILIES) -> dict[Format, bytes]:
    collector = ReferenceCollector(samples, const_labels, families)
    return {
        Format.TEXT: reference_text(collector),  # type: ignore[arg-type]
        Format.OPENMETRICS: reference_openmetrics(collector),
    }


def ours(samples, const_labels=(), families=catalog.FAMILIES) -> dict[Format, bytes]:
    renderer = Renderer(const_labels, families)
    layout = renderer.layout([series_keys(samples)])
    values = flat_values(samples, layout)
    return {fmt: render(layout, values, fmt) for fmt in Format}


# -- random series sets -------------------------------------------------------------------------

label_values = st.text(
    st.one_of(
        st.sampled_from(['"', "\\", "\n", "{", "}", ",", "=", " ", "é", "🔥", "\t"]),
        st.characters(codec="utf-8"),
    ),
    max_size=8,
)
label_names = st.sampled_from(["gpu", "uuid", "model", "a_b", "zone", "Z9"])
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
values = st.one_of(
    finite,
    st.sampled_from([0.0, -0.0, 1.0, 1e6, 123456789.0, 1e16, 1e22, -5e7, 1e-7]),
    st.sampled_from([math.inf, -math.inf, math.nan]),
    st.integers(-(2**60), 2**60).map(float),
)
helps = st.text(
    st.one_of(st.sampled_from(['"', "\\", "\n", "é"]), st.characters(codec="utf-8")),
    max_size=12,
).map(lambda t: ("H" + t).rstrip("."))


@st.composite
def family_set(draw) -> dict[str, MetricFamily]:
    families: dict[str, MetricFamily] = {}
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(list(Kind)))
        unit = draw(st.sampled_from(["", "seconds", "bytes"]))
        name = f"gpu_f{i}" + (f"_{unit}" if unit else "")
        name += "_total" if kind is Kind.COUNTER else ""
        buckets = (0.1, 1.0) if kind is Kind.HISTOGRAM else ()
        labels = tuple(draw(st.lists(label_names, max_size=3, unique=True)))
        families[name] = MetricFamily(name, kind, draw(helps), labels, unit, buckets)
    return families


@st.composite
def histogram(draw, name: str, labels: Labels) -> HistogramSample:
    bounds = sorted(set(draw(st.lists(finite, min_size=0, max_size=4))))
    counts = draw(st.lists(values, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    bucket_pairs = tuple(zip([*bounds, math.inf], counts, strict=True))
    return HistogramSample(name, labels, bucket_pairs, draw(values))


@st.composite
def series_set(draw):
    families = draw(family_set())
    const_names = draw(st.lists(st.sampled_from(["node", "pod"]), max_size=2, unique=True))
    const_labels = tuple((k, draw(label_values)) for k in const_names)
    samples: list[AnySample] = []
    for fam in families.values():
        label_sets = draw(
            st.lists(st.tuples(*[label_values] * len(fam.labels)), max_size=4, unique=True)
        )
        for label_set in label_sets:
            labels = tuple(zip(fam.labels, label_set, strict=True))
            if fam.kind is Kind.HISTOGRAM:
                samples.append(draw(histogram(fam.name, labels)))
            else:
                samples.append(Sample(fam.name, labels, draw(values)))
    return families, const_labels, draw(st.permutations(samples))


def revalued(draw, samples: list[AnySample]) -> list[AnySample]:
    """The same series with new values (the next cycle)."""
    out: list[AnySample] = []
    for s in samples:
        if isinstance(s, HistogramSample):
            counts = draw(st.lists(values, min_size=len(s.buckets), max_size=len(s.buckets)))
            buckets = tuple((b, c) for (b, _), c in zip(s.buckets, counts, strict=True))
            out.append(HistogramSample(s.name, s.labels, buckets, draw(values)))
        else:
            out.append(Sample(s.name, s.labels, draw(values)))
    return out


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(series_set(), st.data())
def test_both_formats_match_prometheus_client_byte_for_byte(case, data):
    families, const_labels, samples = case
    bodies = ours(samples, const_labels, families)
    assert bodies == reference(samples, const_labels, families)
    om, text = bodies[Format.OPENMETRICS].decode(), bodies[Format.TEXT].decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1 and "# EOF" not in text
    assert "_created" not in om + text  # samples carry no creation time: none is invented
    # the label values, escapes and all, parse back to what the sources gave
    parsed = {
        (s.name, tuple(sorted(s.labels.items())))
        for fam in parse_text(text)
        for s in fam.samples
        if not s.name.endswith(("_bucket", "_count", "_sum"))
    }
    given = {
        (s.name, tuple(sorted({**dict(const_labels), **dict(s.labels)}.items())))
        for s in samples
        if isinstance(s, Sample)
    }
    assert parsed == given
    # The next cycle: same series, new values, through the layout the renderer kept.
    renderer = Renderer(const_labels, families)
    first = renderer.layout([series_keys(samples)])
    again = revalued(data.draw, samples)
    layout = renderer.layout([series_keys(again)])
    assert layout is first
    expected = reference(again, const_labels, families)
    for fmt in Format:
        assert render(layout, flat_values(again, layout), fmt) == expected[fmt]


@settings(max_examples=300, deadline=None)
@given(values)
def test_values_are_formatted_like_prometheus_client(value):
    assert format_value(value) == floatToGoString(value)


@PROPERTY
@given(series_set())
def test_added_and_removed_series_render_like_a_fresh_renderer(case):
    families, const_labels, samples = case
    renderer = Renderer(const_labels, families)
    half = samples[: len(samples) // 2]
    for step in (samples, half, samples[::-1], samples):
        layout = renderer.layout([series_keys(step)])
        expected = reference(step, const_labels, families)
        for fmt in Format:
            assert render(layout, flat_values(step, layout), fmt) == expected[fmt]


# -- the real catalog: every family, every scenario ----------------------------------------------


def fleet_samples() -> list[AnySample]:
    """The simulated fleet in every scenario at once, with processes, and harness histograms."""
    from exporter.harness.metrics import HarnessMetrics
    from exporter.sources.harness import HarnessSource
    from exporter.sources.simulated import SimulatedSource, parse_scenario
    from tests.test_e2e_simulated import EVERY_SCENARIO

    scenarios = [parse_scenario(text) for text in EVERY_SCENARIO]
    fleet = SimulatedSource(gpus=8, scenarios=scenarios, processes=True)
    for _ in range(3):
        samples = fleet.collect()
    metrics = HarnessMetrics()
    for value in (0.004, 0.02, 0.3, 7.0, 90.0):
        metrics.ttft.observe(value)
        metrics.tpot.observe(value / 100)
    return [*samples, *HarnessSource(metrics).collect()]


CONST = (("cluster", 'a "b"\\c'), ("node", "n\nö"))


def test_the_whole_catalog_in_every_scenario_matches_and_parses_in_both_formats():
    samples = fleet_samples()
    snapshot = make_snapshot(samples, const_labels=CONST, collected_at=0, collected_monotonic=0)
    expected = reference(samples, CONST)
    text, om = snapshot.body(Format.TEXT), snapshot.body(Format.OPENMETRICS)
    assert text == expected[Format.TEXT] and om == expected[Format.OPENMETRICS]
    assert {s.name for s in samples} >= {"inference_time_to_first_token_seconds"}
    parsed_text = {f.name for f in parse_text(text.decode())}
    parsed_om = list(parse_om(om.decode()))
    assert len(parsed_text) == len(parsed_om) == len({s.name for s in samples})
    histogram = next(f for f in parsed_om if f.name == "inference_time_to_first_token_seconds")
    count = next(s for s in histogram.samples if s.name.endswith("_count"))
    assert count.value == 5 and count.labels == dict(CONST)


def test_the_text_format_passes_promtool_check_metrics():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test installs Debian's prometheus package"
    body = make_snapshot(
        fleet_samples(), const_labels=CONST, collected_at=0, collected_monotonic=0
    ).body(Format.TEXT)
    out = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
