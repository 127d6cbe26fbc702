"""`dashboards preview` refuses to draw what is not there: Prometheus unreachable, or with no
data for the dashboards, is one line and exit status 1, and no PNG is written."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.servers import run_prometheus
from tests.test_cli import cli

pytestmark = pytest.mark.e2e


def test_unreachable_prometheus_is_one_line_and_no_png(tmp_path):
    out = tmp_path / "png"
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("dashboards", "preview", f"--prometheus={url}", f"--out={out}")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"gpu-inference-exporter: error: cannot query Prometheus at {url}"
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()


def test_prometheus_without_the_exporters_data_is_one_line_and_no_png(tmp_path):
    out = tmp_path / "png"
    with run_prometheus(tmp_path, []) as prom:
        for extra in ([], ["--allow-empty"]):  # nothing of the exporter's: fails either way
            result = cli(
                "dashboards", "preview", f"--prometheus={prom.url}", f"--out={out}", *extra
            )
            assert result.returncode == 1
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, lines
            assert "has no exporter_build_info in the last 900s: is it scraping" in lines[0]
    assert not out.exists()
