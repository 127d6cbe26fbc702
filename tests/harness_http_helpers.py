"""Helpers for the harness API tests: a tiny engine served on a real 127.0.0.1 listener, an
aiohttp client, the exported request counters, and server-sent events parsed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from exporter import catalog
from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.api.server import ApiServer, ApiSettings
from exporter.harness.engine import Engine
from exporter.sources.harness import HarnessSource
from tests.harness_helpers import idle, tiny_engine, until


@dataclass
class Served:
    engine: Engine
    server: ApiServer
    client: aiohttp.ClientSession

    def counts(self) -> dict[str, float]:
        """inference_requests_total by outcome, as the harness source exports it."""
        return requests_total(self.engine)

    async def post(self, body: object, **kwargs: object) -> aiohttp.ClientResponse:
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/json"}
            return await self.client.post("/v1/completions", data=body, headers=headers)
        return await self.client.post("/v1/completions", json=body, **kwargs)

    async def no_block_leaked(self) -> None:
        """Every request ended and every KV block is back on the free list."""
        await until(lambda: idle(self.engine))
        allocator = self.engine.core.scheduler.allocator
        assert allocator.num_free == allocator.num_total


def requests_total(engine: Engine) -> dict[str, float]:
    samples = HarnessSource(engine.metrics).collect()
    name = catalog.INFERENCE_REQUESTS.name
    return {dict(s.labels)["outcome"]: s.value for s in samples if s.name == name}


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The outcomes whose counter changed, and by how much."""
    return {o: after[o] - before.get(o, 0) for o in after if after[o] != before.get(o, 0)}


@asynccontextmanager
async def serving(
    blocks: int = 256,
    limits: AdmissionLimits | None = None,
    *,
    start: bool = True,
    **config: object,
) -> AsyncIterator[Served]:
    """A tiny CPU engine (started and warmed up unless `start` is false) behind its API on a
    free 127.0.0.1 port, and a client for it; all stopped afterwards."""
    engine = tiny_engine(blocks, **config)
    if start:
        engine.start()
        await engine.wait_ready(30)
    server = ApiServer(engine, ApiSettings("127.0.0.1", 0, limits or AdmissionLimits()))
    await server.start()
    try:
        async with aiohttp.ClientSession(base_url=server.url) as client:
            yield Served(engine, server, client)
    finally:
        await server.stop()
        await asyncio.to_thread(engine.stop)


def parse_events(text: str) -> list[object]:
    """The `data:` payloads of an event stream: JSON objects, and the string "[DONE]"."""
    events: list[object] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), f"not a data event: {block!r}"
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def first_event(response: aiohttp.ClientResponse) -> dict:
    """Read up to the end of the first event of a stream and return its payload."""
    line = await response.content.readline()
    assert line.startswith(b"data: "), line
    assert await response.content.readline() == b"\n"
    return json.loads(line[6:])


__all__ = ["Served", "first_event", "moved", "parse_events", "requests_total", "serving", "until"]
