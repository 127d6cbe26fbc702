"""A real Prometheus (Debian's package) on 127.0.0.1 for tests: started, queried, stopped."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    assert path, "prometheus missing: scripts/test installs Debian's prometheus package"
    return path


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/PATH; returns the decoded body, also for 4xx answers (bad queries)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            return json.load(err)

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def wait_for_samples(self, expr: str, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr).get("data", {}).get("result", [])
            if result:
                return result
            assert time.monotonic() < deadline, f"no samples for {expr} within {timeout}s"
            time.sleep(0.5)


@contextmanager
def run_prometheus(
    targets: list[str], *, scrape_interval: str = "1s", rule_files: list[Path] = ()
) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (host:port) every `scrape_interval`; stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        lines = [
            "global:",
            f"  scrape_interval: {scrape_interval}",
            f"  evaluation_interval: {scrape_interval}",
            "scrape_configs:",
            "  - job_name: gpu-inference-exporter",
            "    static_configs:",
            f"      - targets: {json.dumps(targets)}",
        ]
        if rule_files:
            lines.insert(3, "rule_files: " + json.dumps([str(p) for p in rule_files]))
        config.write_text("\n".join(lines) + "\n")
        port = free_port()
        log = open(Path(tmp) / "prometheus.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        prom = Prometheus(f"http://127.0.0.1:{port}", proc)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (Path(tmp) / "prometheus.log").read_text()
                try:
                    with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "prometheus not ready within 30 s"
                time.sleep(0.2)
            yield prom
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
