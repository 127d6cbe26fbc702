"""Snapshots render through prometheus_client into text and OpenMetrics that parse back."""

import gzip

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from exporter import catalog
from exporter.exposition import (
    Format,
    format_for_accept,
    make_snapshot,
    wants_openmetrics,
)
from exporter.samples import HistogramSample
from tests.conftest import parse_metrics

SAMPLES = [
    catalog.GPU_INFO.sample(
        1,
        gpu="0",
        uuid="GPU-a",
        name='H100 "SXM"\nx',
        pci_bus_id="00000000:18:00.0",
        driver_version="550.90.07",
        cuda_version="12.4",
        backend="simulated",
    ),
    catalog.GPU_TEMPERATURE.sample(71.5, gpu="0", uuid="GPU-a", sensor="gpu"),
    catalog.GPU_ENERGY.sample(12345.5, gpu="0", uuid="GPU-a"),
    catalog.GPU_UP.sample(1, gpu="0", uuid="GPU-a"),
]


def _render(samples=SAMPLES, **kw):
    return make_snapshot(samples, collected_at=1700000000.0, collected_monotonic=1.0, **kw)


def test_text_format_parses_back_with_every_value_and_escaped_label():
    snap = _render()
    parsed = parse_metrics(snap.body(Format.TEXT).decode())
    labels = (("gpu", "0"), ("uuid", "GPU-a"))
    assert parsed[("gpu_energy_joules_total", labels)] == 12345.5
    assert (
        parsed[("gpu_temperature_celsius", (("gpu", "0"), ("sensor", "gpu"), ("uuid", "GPU-a")))]
        == 71.5
    )
    info = [k for k in parsed if k[0] == "gpu_info"]
    assert dict(info[0][1])["name"] == 'H100 "SXM"\nx'
    assert snap.series == 4
    assert b"# TYPE gpu_energy_joules_total counter" in snap.body(Format.TEXT)


def test_openmetrics_has_units_and_eof_and_parses():
    body = _render().body(Format.OPENMETRICS).decode()
    assert body.endswith("# EOF\n")
    assert "# UNIT gpu_temperature_celsius celsius" in body
    names = {f.name for f in parse_om(body)}
    assert {"gpu_info", "gpu_temperature_celsius", "gpu_energy_joules", "gpu_up"} <= names


def test_families_come_out_in_catalog_order_whatever_the_sample_order():
    body = _render(list(reversed(SAMPLES))).body(Format.TEXT).decode()
    order = [line.split()[2] for line in body.splitlines() if line.startswith("# TYPE")]
    assert order == ["gpu_info", "gpu_up", "gpu_temperature_celsius", "gpu_energy_joules_total"]


def test_constant_labels_are_on_every_series():
    snap = _render(const_labels=(("node", "n1"), ("pod", "p")))
    parsed = parse_metrics(snap.body(Format.TEXT).decode())
    assert len(parsed) == 4
    for _, labels in parsed:
        assert {("node", "n1"), ("pod", "p")} <= set(labels)


def test_gzip_bodies_decompress_to_the_plain_bodies():
    snap = _render()
    for fmt in Format:
        assert gzip.decompress(snap.body(fmt, gzipped=True)) == snap.body(fmt)


def test_histogram_samples_render_buckets_sum_and_count(monkeypatch):
    fam = catalog.MetricFamily(
        "inference_test_seconds", catalog.Kind.HISTOGRAM, "Test", (), "seconds", (0.1, 1.0)
    )
    monkeypatch.setitem(catalog.FAMILIES, fam.name, fam)
    snap = _render([HistogramSample(fam.name, (), ((0.1, 2), (1.0, 5), (float("inf"), 6)), 4.5)])
    parsed = parse_metrics(snap.body(Format.TEXT).decode())
    assert parsed[("inference_test_seconds_bucket", (("le", "0.1"),))] == 2
    assert parsed[("inference_test_seconds_bucket", (("le", "+Inf"),))] == 6
    assert parsed[("inference_test_seconds_count", ())] == 6
    assert parsed[("inference_test_seconds_sum", ())] == 4.5


def test_each_variant_is_rendered_once_and_only_when_asked_for(monkeypatch):
    from exporter import exposition

    calls = []
    snap = _render()
    real = exposition.render
    monkeypatch.setattr(
        exposition,
        "render",
        lambda layout, values, fmt: calls.append(fmt) or real(layout, values, fmt),
    )
    assert not snap.has((Format.OPENMETRICS, True))
    first = snap.body(Format.OPENMETRICS, gzipped=True)
    assert snap.body(Format.OPENMETRICS, gzipped=True) is first
    assert snap.body(Format.OPENMETRICS) == gzip.decompress(first)
    assert calls == [Format.OPENMETRICS]
    assert not snap.has((Format.TEXT, False))
    snap.prerender([(Format.TEXT, False)])
    assert snap.has((Format.TEXT, False)) and calls == [Format.OPENMETRICS, Format.TEXT]


def test_samples_of_an_unknown_family_are_refused():
    from exporter.samples import Sample

    with pytest.raises(ValueError, match="missing from the catalog"):
        _render([Sample("gpu_bogus", (), 1.0)])


@pytest.mark.parametrize(
    "accept,expected",
    [
        (
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            True,
        ),
        ("text/plain;version=0.0.4", False),
        ("", False),
        ("*/*", False),
        ("application/openmetrics-text; version=1.0.0; q=0", False),
        ("text/plain;q=0.5, application/openmetrics-text;q=0.9", True),
    ],
)
def test_accept_header_negotiation(accept, expected):
    assert wants_openmetrics(accept) is expected
    assert format_for_accept(accept) is (Format.OPENMETRICS if expected else Format.TEXT)
