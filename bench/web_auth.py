#!/usr/bin/env python3
"""What --web.config.file costs a scrape: GET /metrics of the simulated 8-GPU fleet through
plain HTTP, basic auth (bcrypt cost 10, its answer cached), TLS, and both; next to what one
bcrypt check costs (what every scrape would pay without the cache).

Each configuration is a real `serve` process on 127.0.0.1; one client in this process sends the
requests round-robin across them (machine noise hits every row alike), one at a time, on a
kept-alive connection (as Prometheus scrapes), and for TLS also on a new connection per request.

Usage: .venv/bin/python bench/web_auth.py [--requests 500]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import ms, percentile, table
from tests.conftest import free_port
from tests.tls import Authority, write_web_config

PASSWORD = "bench-password"


def start(config: Path | None, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "exporter", "serve", "--backend=simulated", "--no-harness"]
    cmd += [f"--web.listen-address=127.0.0.1:{port}"]
    if config is not None:
        cmd.append(f"--web.config.file={config}")
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc, port


class Client:
    def __init__(self, port: int, tls: ssl.SSLContext | None, auth: bool, reconnect: bool):
        self.port, self.tls, self.reconnect = port, tls, reconnect
        token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"} if auth else {}
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.tls is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port)

    def get(self) -> float:
        started = time.perf_counter()
        if self.conn is None or self.reconnect:
            if self.conn is not None:
                self.conn.close()
            self.conn = self._connect()
        self.conn.request("GET", "/metrics", headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200 and body, response.status
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-auth-"))
    ca = Authority.create(tmp, "ca")
    ca.issue("server", server=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    tls = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"}}
    users = {"basic_auth_users": {"prometheus": hashed}}
    configs = {
        "plain": None,
        "auth": write_web_config(tmp / "auth.yml", users),
        "tls": write_web_config(tmp / "tls.yml", tls),
        "tls+auth": write_web_config(tmp / "tls-auth.yml", {**tls, **users}),
    }
    client_tls = ssl.create_default_context(cafile=ca.pair.cert)
    procs, clients = [], {}
    try:
        for name, config in configs.items():
            proc, port = start(config, tmp / f"{name}.log")
            procs.append(proc)
            context = client_tls if "tls" in name else None
            auth = "auth" in name
            clients[f"{name}, kept-alive"] = Client(port, context, auth, reconnect=False)
            if context is not None:
                clients[f"{name}, new connection"] = Client(port, context, auth, reconnect=True)
        for client in clients.values():  # warm-up: the first bcrypt check, first renders
            for _ in range(20):
                client.get()
        timings: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.requests):
            for name, client in clients.items():
                timings[name].append(client.get())
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    checks = []
    for _ in range(20):
        started = time.perf_counter()
        bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
        checks.append(time.perf_counter() - started)
    rows = [
        [name, ms(percentile(v, 50)), ms(percentile(v, 99)), ms(sum(v) / len(v))]
        for name, v in timings.items()
    ]
    rows.append(
        ["one bcrypt check, cost 10", ms(percentile(checks, 50)), ms(percentile(checks, 99)),
         ms(sum(checks) / len(checks))]
    )  # fmt: skip
    table(
        f"GET /metrics, simulated 8-GPU fleet, {args.requests} requests per row (ms)",
        ["configuration", "p50", "p99", "mean"],
        rows,
        "auth rows: bcrypt ran once per process (the first request); the last row is what each "
        "scrape would pay without the cache",
    )


if __name__ == "__main__":
    main()
