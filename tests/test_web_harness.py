"""The harness API's listener: it logs the address it bound (not 127.0.0.1 when it listens
everywhere), warns when it listens beyond loopback with no --harness.web.config.file, and with
one serves TLS and basic auth, its own synthetic load getting through."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.api.server import ApiServer, ApiSettings
from exporter.harness.loadgen import LoadProfile, parse_length_distribution
from exporter.web.security import WebSecurity
from tests.harness_helpers import tiny_engine, until
from tests.harness_http_helpers import requests_total
from tests.tls import Authority, bcrypt_hash, write_web_config

BEYOND = "beyond loopback"


async def _listen(settings: ApiSettings) -> ApiServer:
    server = ApiServer(tiny_engine(), settings)
    await server.start()
    return server


@pytest.mark.parametrize(
    ("host", "warned", "bound"),
    [(None, True, "0.0.0.0:"), ("127.0.0.1", False, "127.0.0.1:")],
)
def test_the_api_logs_where_it_listens_and_warns_beyond_loopback(caplog, host, warned, bound):
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        server = await _listen(ApiSettings(host, 0, AdmissionLimits()))
        await server.stop()

    asyncio.run(scenario())
    listening = [r.getMessage() for r in caplog.records if "harness API on" in r.getMessage()]
    assert listening and all(f"http://{bound}" in m or "[::]" in m for m in listening), listening
    assert any(f"http://{bound}" in m for m in listening)
    assert (BEYOND in caplog.text) is warned


def test_a_secured_api_needs_credentials_and_its_own_load_gets_through(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ca = Authority.create(tmp_path, "ca")
    ca.issue("server", server=True)
    config = write_web_config(
        tmp_path / "web.yml",
        {
            "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
            "basic_auth_users": {"client": bcrypt_hash("pw")},
        },
    )
    security = WebSecurity(config, "--harness.web.config.file")
    load = LoadProfile(20.0, parse_length_distribution("8"), parse_length_distribution("2"), seed=1)

    async def scenario() -> tuple[int, int, dict[str, float]]:
        engine = tiny_engine()
        engine.start()
        await engine.wait_ready(30)  # /v1/models is 503 while the model warms up
        server = ApiServer(engine, ApiSettings(None, 0, AdmissionLimits(), load, security=security))
        await server.start()
        try:
            assert server.url.startswith("https://127.0.0.1:")
            connector = aiohttp.TCPConnector(ssl=False)
            async with aiohttp.ClientSession(connector=connector) as client:
                async with client.get(server.url + "/v1/models") as response:
                    refused = response.status
                auth = {"Authorization": aiohttp.encode_basic_auth("client", "pw")}
                async with client.get(server.url + "/v1/models", headers=auth) as response:
                    allowed = response.status
            await until(lambda: requests_total(engine).get("ok", 0) >= 3, timeout=30)
            return refused, allowed, requests_total(engine)
        finally:
            await server.stop()
            await asyncio.to_thread(engine.stop)

    refused, allowed, totals = asyncio.run(scenario())
    assert (refused, allowed) == (401, 200)
    assert totals["ok"] >= 3 and totals.get("rejected", 0) == 0
    assert BEYOND not in caplog.text  # beyond loopback, but with TLS and basic auth
