"""Shared test helpers: a free port, and the exporter run as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent

pytest_plugins = ["tests.fake_nvml.fixtures", "tests.fake_dcgm.fixtures"]

#: A test (set-up and tear-down included) that runs longer than this fails instead of hanging
#: the whole run; `@pytest.mark.time_limit(S)` gives a slow one more.
DEFAULT_TIME_LIMIT_S = 180


class TestTimeLimitExceeded(BaseException):
    """Raised in the main thread when a test outlives its time limit (a BaseException, so no
    `except Exception` in the code under test swallows it)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("time_limit")
    limit = int(marker.args[0]) if marker else DEFAULT_TIME_LIMIT_S

    def expire(signum, frame):
        raise TestTimeLimitExceeded(f"{item.nodeid} ran past its time limit of {limit} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text → {(sample name, sorted labels): value}, via prometheus_client's parser."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(metrics: dict, name: str, **labels: str) -> dict[tuple, float]:
    """The parsed series of `name` whose labels include `labels`."""
    return {
        k: v
        for k, v in metrics.items()
        if k[0] == name and all(dict(k[1]).get(lk) == lv for lk, lv in labels.items())
    }


@dataclass
class RunningExporter:
    url: str
    process: subprocess.Popen
    harness_url: str = ""  # the harness's API, when it runs

    def get(self, path: str = "/metrics", timeout: float = 5.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def metrics(self) -> dict:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body)


@contextmanager
def run_exporter(
    *args: str, env: dict[str, str] | None = None, harness: bool = False
) -> Iterator[RunningExporter]:
    """Start `gpu-inference-exporter serve ARGS` on a free 127.0.0.1 port; stop it afterwards.

    Without the inference harness (`--no-harness`: loading PyTorch and a model costs seconds)
    unless `harness`; with it, the harness's API listens on a free port too (`harness_url`).
    Outside Kubernetes the exporter labels every series with the host name as `node`; the
    tests that do not set a node turn that off (`--label=node=`) to read series by their own
    labels."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "exporter",
        "serve",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    harness_url = ""
    if harness:
        harness_port = free_port()
        cmd.append(f"--harness.listen-address=127.0.0.1:{harness_port}")
        harness_url = f"http://127.0.0.1:{harness_port}"
    else:
        cmd.append("--no-harness")
    cmd += args
    if not (env or {}).get("NODE_NAME") and not any(a.startswith("--label=node=") for a in args):
        cmd.append("--label=node=")
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningExporter(f"http://127.0.0.1:{port}", proc, harness_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exporter exited {proc.returncode}: {proc.stdout.read()}")
            try:
                if running.get("/metrics", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("exporter did not serve /metrics within 30 s")
            time.sleep(0.1)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def exporter_factory():
    return run_exporter
