"""Real servers for end-to-end tests (Debian's prometheus and alertmanager) on 127.0.0.1:
started, waited for, queried, and always stopped; and a stand-in for PagerDuty's Events API."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port


def binary(*names: str) -> str:
    """The first of `names` on PATH; fails saying how scripts/test installs it."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError(
        f"{' or '.join(names)} not found: scripts/test installs Debian's prometheus and "
        "prometheus-alertmanager packages"
    )


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body), also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@contextmanager
def run_server(cmd: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen]:
    """Start `cmd`, wait until `ready_url` answers 200, stop it afterwards (whatever happens)."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd[0]} exited {proc.returncode}: {log.read_text()}")
            try:
                if http_get(ready_url, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{cmd[0]} not ready in 30 s: {log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/PATH; the decoded body, also for 4xx answers (bad queries)."""
        _, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10)
        return json.loads(body)

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


def scrape_config(job: str, targets: Sequence[str]) -> dict[str, Any]:
    """One static scrape job; targets as host:port or URLs."""
    hosts = [urllib.parse.urlsplit(t).netloc or t for t in targets]
    return {"job_name": job, "static_configs": [{"targets": hosts}]}


@contextmanager
def run_prometheus(
    tmp: Path,
    scrape_configs: Sequence[dict[str, Any]],
    *,
    interval: str = "1s",
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    flags: Sequence[str] = (),
) -> Iterator[Prometheus]:
    """Prometheus with its config and storage under `tmp`, scraping and evaluating every
    `interval`; stopped afterwards."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": list(scrape_configs),
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    if alertmanager_url:
        am = urllib.parse.urlsplit(alertmanager_url).netloc
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]}
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [
        binary("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp / 'prom-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        *flags,
    ]
    url = f"http://127.0.0.1:{port}"
    with run_server(cmd, url + "/-/ready", tmp / "prometheus.log"):
        yield Prometheus(url)


# --- a stand-in for PagerDuty's Events API v2 -----------------------------------------------------

PAGERDUTY_ENQUEUE = "/v2/enqueue"


@dataclass
class Received:
    """One POST to the PagerDuty stand-in; the properties read an Events API v2 event as
    alerts/alertmanager.py fills it."""

    at: float  # time.monotonic() on arrival
    path: str
    body: dict[str, Any]

    @property
    def action(self) -> str:
        return self.body["event_action"]

    @property
    def key(self) -> str:
        return self.body["routing_key"]

    @property
    def details(self) -> dict[str, str]:
        return self.body["payload"]["custom_details"]

    @property
    def alertnames(self) -> set[str]:
        """The firing alerts of the group (empty in a resolve event)."""
        return set(self.details["alertnames"].split())

    @property
    def node(self) -> str:
        return self.details["node"]

    @property
    def gpu(self) -> str:
        return self.details["gpu"]

    @property
    def problem(self) -> str:
        """The payload's class: the fleet alert's problem, else the alert name."""
        return self.body["payload"].get("class", "")


@dataclass
class Receiver:
    """Records every POST; answers like PagerDuty's Events API v2 (202, status success)."""

    url: str
    events: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(Received(time.monotonic(), path, body))

    def received(self, path: str = PAGERDUTY_ENQUEUE) -> list[Received]:
        with self.lock:
            return [e for e in self.events if e.path == path]


@contextmanager
def pagerduty_receiver() -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            receiver.record(self.path, body)
            answer = {"status": "success", "message": "Event processed"}
            if "dedup_key" in body:
                answer["dedup_key"] = body["dedup_key"]
            data = json.dumps(answer).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
