"""The exporter behind --web.config.file as a user runs it: a real Prometheus scrapes it over TLS
with a client certificate and basic auth; curl is refused with a bad password, no password,
plain HTTP and a client certificate from another CA; a broken file stops the start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port
from tests.servers import binary, run_prometheus
from tests.tls import Authority, bcrypt_hash, write_web_config

pytestmark = pytest.mark.e2e

PASSWORD = "scrape-me-9"


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("web")
    ca = Authority.create(d, "ca")
    ca.issue("server", server=True)
    client = ca.issue("prometheus", server=False)
    intruder = Authority.create(d, "other-ca").issue("intruder", server=False)
    config = write_web_config(
        d / "web.yml",
        {
            "tls_server_config": {
                "cert_file": "server.crt",
                "key_file": "server.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "ca.crt",
            },
            "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD)},
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
        },
    )
    return {"dir": d, "config": config, "ca": ca.pair, "client": client, "intruder": intruder}


def curl(url: str, *args: str) -> tuple[int, str]:
    """(curl's exit status, what it printed: the HTTP status with -w)."""
    proc = subprocess.run(
        [
            binary("curl"),
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
    )
    return proc.returncode, proc.stdout


@contextmanager
def exporter(*args: str, log: Path) -> Iterator[subprocess.Popen]:
    cmd = [sys.executable, "-m", "exporter", "serve", "--no-harness", *args]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_prometheus_scrapes_over_tls_with_basic_auth_and_others_are_refused(secured, tmp_path):
    port = free_port()
    target = f"127.0.0.1:{port}"
    url = f"https://{target}/custom-metrics"
    log = tmp_path / "exporter.log"
    with exporter(
        "--backend=simulated",
        "--simulate.gpus=2",
        f"--web.listen-address={target}",
        f"--web.config.file={secured['config']}",
        "--web.telemetry-path=/custom-metrics",
        log=log,
    ):
        assert f"listening on https://{target}/custom-metrics" in log.read_text()
        ca = ("--cacert", str(secured["ca"].cert))
        client = ("--cert", str(secured["client"].cert), "--key", str(secured["client"].key))
        assert curl(url, *ca, *client, "-u", f"prometheus:{PASSWORD}") == (0, "200")
        assert curl(url, *ca, *client, "-u", "prometheus:wrong") == (0, "401")
        assert curl(url, *ca, *client) == (0, "401")
        # plain HTTP on the TLS port, and TLS without or with a foreign client certificate:
        # no HTTP answer at all
        plain = curl(f"http://{target}/custom-metrics", "-u", f"prometheus:{PASSWORD}")
        assert plain[0] != 0 and plain[1] == "000"
        intruder = ("--cert", str(secured["intruder"].cert), "--key", str(secured["intruder"].key))
        foreign = curl(url, *ca, *intruder, "-u", f"prometheus:{PASSWORD}")
        assert foreign[0] != 0 and foreign[1] == "000"
        assert curl(url, *ca, "-u", f"prometheus:{PASSWORD}")[1] == "000"

        tls = {
            "ca_file": str(secured["ca"].cert),
            "cert_file": str(secured["client"].cert),
            "key_file": str(secured["client"].key),
        }
        jobs = [
            {
                "job_name": job,
                "scheme": "https",
                "metrics_path": "/custom-metrics",
                "tls_config": tls,
                "basic_auth": {"username": "prometheus", "password": password},
                "static_configs": [{"targets": [target]}],
            }
            for job, password in (("secure", PASSWORD), ("wrong-password", "guess"))
        ]
        with run_prometheus(tmp_path, jobs) as prom:
            result = prom.wait_for_samples('gpu_temperature_celsius{job="secure"}')
            assert {r["metric"]["gpu"] for r in result} == {"0", "1"}
            prom.wait_for_samples('up{job="wrong-password"} == 0')
            targets = prom.api("targets")["data"]["activeTargets"]
            errors = {t["labels"]["job"]: t["lastError"] for t in targets}
            assert "401" in errors["wrong-password"]
            assert errors["secure"] == ""
    text = log.read_text()
    assert PASSWORD not in text and "$2b$" not in text


def test_a_broken_web_config_stops_the_start_with_one_line(tmp_path):
    bad = write_web_config(tmp_path / "web.yml", {"basic_auth_users": {"ops": "plaintext!"}})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "serve",
            "--backend=simulated",
            "--no-harness",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            f"--web.config.file={bad}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "'ops' is not a bcrypt hash" in lines[0] and "plaintext!" not in proc.stderr
