"""The real exporter process against slow, greedy and stubborn clients: bounded shutdown (a body
trickling during SIGTERM, a second signal), header and body timeouts and the connection cap on
both listeners (metrics and harness API)."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from tests.conftest import parse_metrics, run_exporter, series

pytest.importorskip("torch")

READ_TIMEOUT = 1.0
MAX_CONNECTIONS = 4
#: Every line the `bounded` exporter logged that a test read.
LOG: list[str] = []


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def trickle_a_body(port: int) -> socket.socket:
    """A completion whose 1,000-byte body has only begun to arrive."""
    s = connect(port)
    head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    s.sendall(f"{head}Content-Length: 1000\r\n\r\n{{".encode())
    return s


def wait_for_line(proc, text: str, timeout: float = 30.0) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        LOG.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} not logged: {lines}")


@pytest.fixture(scope="module")
def bounded():
    """One exporter with its harness, short read timeouts and a small connection cap."""
    with run_exporter(
        "--backend=none",
        "--harness",  # opt-in beside a GPU backend
        f"--web.read-timeout={READ_TIMEOUT:g}s",
        f"--web.max-connections={MAX_CONNECTIONS}",
        "--web.drain-timeout=1s",
        "--harness.request-timeout=60s",
        harness=True,
    ) as running:
        wait_for_line(running.process, "inference engine ready")
        yield running


def requests_total(running) -> dict[str, float]:
    m = running.metrics()
    return {dict(k[1])["outcome"]: v for k, v in series(m, "inference_requests_total").items()}


@pytest.mark.parametrize("listener", ["metrics", "api"])
def test_a_connection_over_the_cap_gets_a_json_503_and_the_others_are_served(bounded, listener):
    port = port_of(bounded.url if listener == "metrics" else bounded.harness_url)
    held = [connect(port) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        extra = connect(port)
        answer = read_all(extra)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)  # the server sees the closes; a new connection is served again
    assert bounded.get("/readyz" if listener == "metrics" else "/healthz")[0] in (200, 503)
    s = connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"503 Service Unavailable" not in read_all(s).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("listener", ["metrics", "api"])
def test_a_client_that_never_finishes_its_headers_is_cut_off(bounded, listener):
    port = port_of(bounded.url if listener == "metrics" else bounded.harness_url)
    s = connect(port)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    assert read_all(s) == b""  # closed without an answer: there was no request
    assert time.monotonic() - started < READ_TIMEOUT + 5


def test_a_trickled_body_is_answered_408_and_counted(bounded):
    before = requests_total(bounded).get("rejected", 0)
    s = trickle_a_body(port_of(bounded.harness_url))
    answer = read_all(s).decode()
    assert answer.startswith("HTTP/1.1 408")
    body = json.loads(answer.partition("\r\n\r\n")[2])
    assert body["error"]["code"] == "body_timeout"
    deadline = time.monotonic() + 10
    while requests_total(bounded).get("rejected", 0) != before + 1:
        assert time.monotonic() < deadline, "the 408 was not counted as rejected"
        time.sleep(0.2)


def test_metrics_export_the_failed_engine_family(bounded):
    m = parse_metrics(bounded.get("/metrics")[1])
    assert series(m, "inference_engine_failed").popitem()[1] == 0


def test_requests_aiohttp_cannot_parse_are_refused_in_one_log_line(bounded):
    for _ in range(3):
        s = connect(port_of(bounded.url))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        assert read_all(s).startswith(b"HTTP/1.0 400")
    wait_for_line(bounded.process, "request refused")  # the rest is counted at the end


def test_sigterm_with_a_body_trickling_drains_within_the_timeout(bounded):
    """The last test on `bounded`: it stops it. The body would take 60 s (the request
    timeout) and 10 s (the read timeout); the drain timeout, 1 s, bounds the shutdown."""
    s = trickle_a_body(port_of(bounded.harness_url))
    time.sleep(0.2)
    started = time.monotonic()
    bounded.process.send_signal(signal.SIGTERM)
    wait_for_line(bounded.process, "SIGTERM: stopping")
    status, body = bounded.get("/readyz")
    assert status == 503 and "shutting down (SIGTERM received)" in json.loads(body)["problems"]
    assert bounded.process.wait(timeout=30) == 0
    assert time.monotonic() - started < 10
    s.close()
    log = "".join(LOG) + bounded.process.stdout.read()
    assert log.count("request refused") == 1 and "Traceback" not in log


def test_a_second_signal_exits_at_once():
    with run_exporter(
        "--backend=none",
        "--harness",
        "--web.drain-timeout=60s",
        "--harness.request-timeout=60s",
        harness=True,
    ) as running:
        wait_for_line(running.process, "inference engine ready")
        s = trickle_a_body(port_of(running.harness_url))
        running.process.send_signal(signal.SIGTERM)
        wait_for_line(running.process, "SIGTERM: stopping")
        started = time.monotonic()
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=30) == 128 + signal.SIGINT
        assert time.monotonic() - started < 10  # not the 60 s drain
        assert "SIGINT again: exiting now" in running.process.stdout.read()
        s.close()
