"""Process helpers shared by the benchmarks: ports, /proc figures, HTTP gets, readiness waits.

A benchmark's readiness wait must not change what it then measures: for this exporter it asks
`/readyz`, which never renders an exposition (a `/metrics` poll would be a scrape, and the
exporter learns from scrapes what to render ahead).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

#: What Prometheus sends: OpenMetrics first, gzip.
PROM_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "Accept-Encoding": "gzip",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for {pid}")


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        return resp.read()


def wait_until_ready(
    proc: subprocess.Popen, url: str, name: str, marker: bytes | None = None, timeout: float = 120
) -> None:
    """Poll `url` until it answers 200 (and contains `marker` when given); exit if proc dies."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"{name} exited {proc.returncode}: {err[-2000:]}")
        try:
            body = get(url, timeout=2)
            if marker is None or marker in body:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} was not ready within {timeout:g} s ({url})")
        time.sleep(0.2)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
