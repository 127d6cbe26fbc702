"""A bounded fuzz of the harness API on a real listener: random JSON, random bytes, random
headers and encodings. Never a 500; every answer JSON (or, for a stream, JSON events) with a
status from the README's table; every POST /v1/completions counted exactly once; no KV block
leaked; nothing logged with a traceback."""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import logging
import threading
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.api.server import ApiServer, ApiSettings
from exporter.listener import ListenerLimits
from tests.harness_helpers import idle, tiny_engine
from tests.harness_http_helpers import requests_total

#: The statuses the README's table lists for the API (and 404/405 for what is no request).
STATUSES = {200, 400, 404, 405, 408, 413, 415, 503, 504}
LIMITS = AdmissionLimits(max_prompt_tokens=64, max_tokens=16, request_timeout=5.0, max_waiting=8)
FIELDS = ["prompt", "max_tokens", "temperature", "stream", "ignore_eos", "model", "n", "stop"]


class Traceback(logging.Handler):
    """Remembers every record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.records.append(record)


class Served:
    """A tiny engine and its API on an event loop of their own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.engine = tiny_engine(128)
        listener = ListenerLimits(header_timeout=5.0, body_timeout=5.0)
        self.server = ApiServer(self.engine, ApiSettings("127.0.0.1", 0, LIMITS, None, listener))
        self.call(self._start())

    async def _start(self) -> None:
        self.engine.start()
        await self.engine.wait_ready(60)
        await self.server.start()

    def call(self, coro, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.server.stop())
        self.engine.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    s = Served()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def tracebacks() -> Iterator[Traceback]:
    handler = Traceback()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# --- what a client may send -----------------------------------------------------------------

texts = st.text(max_size=40) | st.sampled_from(["\ud800", "\udfff x", "é" * 10, ""])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)
plausible = st.fixed_dictionaries(
    {"prompt": texts | st.lists(st.integers(min_value=-5, max_value=300), max_size=8)},
    optional={
        "max_tokens": st.integers(min_value=-2, max_value=40) | json_values,
        "temperature": st.floats(min_value=-1, max_value=3, allow_nan=False) | json_values,
        "stream": st.booleans() | json_values,
        "ignore_eos": st.booleans(),
        "model": st.sampled_from(["tiny", "gpt-4"]) | json_values,
        "n": st.integers(0, 3),
    },
)


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


bodies = (
    plausible.map(_dumps)
    | json_values.map(_dumps)
    | st.binary(max_size=200)
    | st.sampled_from([3, 999, 5_000, 100_000]).map(lambda depth: b"[" * depth + b"]" * depth)
    | st.just(b'{"prompt": "\\ud800", "max_tokens": 2}')
    | st.just(b'{"prompt": "hi", "max_tokens": 1' + b"0" * 5000 + b"}")
    | st.just(b'{"prompt": "hi", "temperature": NaN}')
)
encodings = st.sampled_from(
    [None, "identity", "gzip", "x-gzip", "deflate", "br", "zstd", "gzip, br", "GZIP", "bogus"]
)
header_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
    lambda n: n.lower() not in {"content-length", "transfer-encoding", "host", "connection", "-"}
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
requests = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["POST"] * 8 + ["GET", "PUT"]),
        "path": st.sampled_from(["/v1/completions"] * 8 + ["/v1/models", "/nope"]),
        "body": bodies,
        "encoding": encodings,
        "compress": st.booleans(),
        "content_type": st.sampled_from(["application/json", "text/plain", "", "x/y; a=b"]),
        "extra": st.dictionaries(header_names, header_values, max_size=4),
    }
)


def encode(body: bytes, encoding: str | None, compress: bool) -> bytes:
    """The body as that encoding would send it, when `compress` (else sent as it is)."""
    if not compress or encoding is None:
        return body
    if encoding.lower() in ("gzip", "x-gzip"):
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    return body


def send(port: int, req: dict) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = encode(req["body"], req["encoding"], req["compress"])
        headers = {**req["extra"], "Content-Length": str(len(body))}
        if req["content_type"]:
            headers["Content-Type"] = req["content_type"]
        if req["encoding"] is not None:
            headers["Content-Encoding"] = req["encoding"]
        conn.request(req["method"], req["path"], body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def check_json(content_type: str, payload: bytes) -> None:
    if content_type.startswith("text/event-stream"):
        events = [e for e in payload.decode().split("\n\n") if e.strip()]
        assert events and events[-1] == "data: [DONE]", payload[-200:]
        for event in events[:-1]:
            json.loads(event.removeprefix("data: "))
        return
    assert content_type.startswith("application/json"), (content_type, payload[:200])
    json.loads(payload)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(req=requests)
def test_every_answer_is_json_with_a_documented_status_and_counted_once(served, tracebacks, req):
    before = requests_total(served.engine)
    status, content_type, payload = send(served.server.port, req)
    event(f"HTTP {status}")
    assert status in STATUSES, (status, payload[:300])
    check_json(content_type, payload)
    is_request = req["method"] == "POST" and req["path"] == "/v1/completions"
    served.call(until_idle(served))
    counted = sum(requests_total(served.engine).values()) - sum(before.values())
    assert counted == (1 if is_request else 0), (status, payload[:300])
    assert not tracebacks.records, tracebacks.records[0].getMessage()


async def until_idle(served: Served, timeout: float = 10.0) -> None:
    """Every request ended and every KV block back on the free list."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not idle(served.engine):
        assert loop.time() < deadline, "a request or a KV block was left behind"
        await asyncio.sleep(0.005)
    allocator = served.engine.core.scheduler.allocator
    assert allocator.num_free == allocator.num_total
