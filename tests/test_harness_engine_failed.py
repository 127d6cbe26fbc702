"""An engine that fails, at start or while serving, says so: the API answers 500
`engine_failed` without Retry-After (retrying cannot help), `inference_ready` is 0,
`inference_engine_failed` 1, /readyz names the reason, and the log has one line."""

from __future__ import annotations

import logging

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.api.server import ApiServer, ApiSettings
from exporter.harness.config import EngineConfig, KVCacheMemory
from exporter.harness.engine import Engine
from exporter.sources.harness import HarnessSource
from tests.harness_helpers import run, until
from tests.harness_http_helpers import moved, requests_total, serving


def gauges(engine) -> dict[str, float]:
    names = ("inference_ready", "inference_engine_failed")
    return {s.name: s.value for s in HarnessSource(engine.metrics).collect() if s.name in names}


async def assert_engine_failed_answers(client, engine) -> None:
    before = requests_total(engine)
    response = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
    body = await response.json()
    assert response.status == 500 and "Retry-After" not in response.headers
    assert body["error"]["code"] == "engine_failed"
    assert "retrying will not help" in body["error"]["message"]
    assert moved(before, requests_total(engine)) == {"error": 1}
    models = await client.get("/v1/models")
    assert models.status == 500 and (await models.json())["error"]["code"] == "engine_failed"


def test_an_engine_that_fails_to_start_answers_engine_failed_not_warming_up(caplog):
    half = KVCacheMemory(fraction=0.5)

    async def scenario():
        import aiohttp

        # a fraction of free CUDA memory, on the CPU: it can never start
        engine = Engine(EngineConfig(preset="tiny", device="cpu", kv_cache_memory=half))
        engine.start()
        server = ApiServer(engine, ApiSettings("127.0.0.1", 0, AdmissionLimits()))
        await server.start()
        try:
            await until(lambda: engine.failure is not None)
            async with aiohttp.ClientSession(base_url=server.url) as client:
                await assert_engine_failed_answers(client, engine)
        finally:
            await server.stop()
            engine.stop()
        return engine

    with caplog.at_level(logging.INFO):
        engine = run(scenario())
    ready, reasons = engine.readiness()
    assert not ready and "fraction of free CUDA memory" in reasons[0]
    assert gauges(engine) == {"inference_ready": 0, "inference_engine_failed": 1}
    failures = [r for r in caplog.records if "inference engine failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None


def test_an_engine_whose_thread_dies_while_serving_fails_for_good(caplog):
    async def scenario():
        async with serving() as s:
            assert gauges(s.engine) == {"inference_ready": 1, "inference_engine_failed": 0}

            def broken():
                raise RuntimeError("scheduler invariant broken")

            s.engine.core.scheduler.schedule = broken  # the engine thread's next step dies
            first = await s.post({"prompt": "hi", "max_tokens": 4})
            assert first.status == 500
            assert (await first.json())["error"]["code"] == "engine_failed"
            await assert_engine_failed_answers(s.client, s.engine)
            await until(lambda: s.engine.stats.kv_blocks_used == 0)
            return s.engine

    with caplog.at_level(logging.INFO):
        engine = run(scenario())
    ready, reasons = engine.readiness()
    assert not ready and "scheduler invariant broken" in reasons[0]
    assert gauges(engine) == {"inference_ready": 0, "inference_engine_failed": 1}
    failures = [r for r in caplog.records if "inference engine failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is None
