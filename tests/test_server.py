"""The HTTP endpoints, served from the snapshot while the sampler runs in the background."""

import asyncio
import contextlib
import gzip
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from exporter.exposition import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, Format
from exporter.sampler import Sampler
from exporter.server import accepts_gzip, build_app
from tests.conftest import parse_metrics
from tests.fakes import CountingSource, HangingSource


def parse_om_families(text: str) -> dict[str, float]:
    """OpenMetrics text → {family name: the value of its first sample}."""
    return {f.name: f.samples[0].value for f in parse_om(text)}


OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@contextlib.asynccontextmanager
async def serving(sampler, ready_checks=(), run_sampler=True):
    client = TestClient(TestServer(build_app(sampler, ready_checks)))
    await client.start_server()
    task = asyncio.create_task(sampler.run()) if run_sampler else None
    try:
        yield client
    finally:
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()


async def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_metrics_negotiates_format_and_gzip():
    async def scenario():
        sampler = Sampler([CountingSource()], interval=0.05)
        async with serving(sampler) as client:
            await wait_for(lambda: sampler.snapshot is not None)
            plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
            om = await client.get(
                "/metrics", headers={"Accept": OPENMETRICS_ACCEPT, "Accept-Encoding": "identity"}
            )
            # auto_decompress off: check the bytes on the wire really are gzip
            raw = await client.session.get(
                client.make_url("/metrics"),
                headers={"Accept-Encoding": "gzip, deflate"},
                auto_decompress=False,
            )
            return (
                plain.status,
                plain.headers["Content-Type"],
                await plain.text(),
                om.headers["Content-Type"],
                await om.text(),
                raw.headers.get("Content-Encoding"),
                await raw.read(),
            )

    status, plain_type, plain, om_type, om, encoding, raw = asyncio.run(scenario())
    assert status == 200
    assert plain_type == CONTENT_TYPE_TEXT
    assert "gpu_temperature_celsius" in plain and "# EOF" not in plain
    assert om_type == CONTENT_TYPE_OPENMETRICS
    assert om.endswith("# EOF\n")
    assert encoding == "gzip"
    assert b"gpu_temperature_celsius" in gzip.decompress(raw)


def test_metrics_is_503_before_the_first_snapshot_and_readyz_says_why():
    async def scenario():
        sampler = Sampler([CountingSource()], interval=1)
        async with serving(sampler, run_sampler=False) as client:
            metrics = await client.get("/metrics")
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
            return metrics.status, ready.status, await ready.json(), health.status

    metrics, ready, body, health = asyncio.run(scenario())
    assert (metrics, ready, health) == (503, 503, 200)
    assert body == {"ready": False, "problems": ["no snapshot collected yet"]}


def test_a_source_that_hangs_forever_does_not_hold_up_scrapes_and_fails_readyz():
    """The acceptance test of the foundation issue: a wedged source costs only its own series."""
    interval = 0.1
    hung = HangingSource(answers=2)
    good = CountingSource()
    sampler = Sampler([good, hung], interval=interval, timeout=interval)

    async def scenario():
        async with serving(sampler) as client:
            await wait_for(lambda: sampler.cycles >= 2)
            ready_before = (await client.get("/readyz")).status
            await wait_for(hung.hung.is_set)
            hung_at = time.monotonic()
            scrapes = []
            # Scrape repeatedly while the source is hung: each must answer, with fresh values
            # from the good source, however long the hang lasts.
            while time.monotonic() - hung_at < 6 * interval:
                resp = await client.get("/metrics", timeout=2)
                scrapes.append((resp.status, parse_metrics(await resp.text())))
                await asyncio.sleep(interval / 4)
            await wait_for(lambda: time.monotonic() - hung_at > (3 + 1) * interval)
            ready_after = await client.get("/readyz")
            landing = await (await client.get("/")).text()
            return ready_before, scrapes, ready_after.status, await ready_after.json(), landing

    try:
        ready_before, scrapes, ready_after, body, landing = asyncio.run(scenario())
    finally:
        hung.release.set()
    assert ready_before == 200
    assert all(status == 200 for status, _ in scrapes)
    last = scrapes[-1][1]
    assert last[("exporter_source_up", (("source", "hung"),))] == 0
    assert last[("exporter_source_up", (("source", "good"),))] == 1
    assert last[("exporter_collect_errors_total", (("reason", "timeout"), ("source", "hung")))] >= 2
    good_values = [
        m[("gpu_temperature_celsius", (("gpu", "0"), ("sensor", "gpu"), ("uuid", "GPU-0")))]
        for _, m in scrapes
    ]
    assert good_values[-1] > good_values[0]  # the good source kept publishing fresh values
    # Through the gap its last series stay (up 0) for --collect.keep-series missed cycles: a
    # scrape landing there still has them; then they end.
    held = ("gpu_temperature_celsius", (("gpu", "1"), ("sensor", "gpu"), ("uuid", "GPU-1")))
    timeouts = ("exporter_collect_errors_total", (("reason", "timeout"), ("source", "hung")))
    in_gap = [m for _, m in scrapes if 1 <= m[timeouts] <= sampler.keep_series]
    after = [m for _, m in scrapes if m[timeouts] > sampler.keep_series]
    assert in_gap and after
    assert all(
        m[held] == 2.0 and m[("exporter_source_up", (("source", "hung"),))] == 0 for m in in_gap
    )
    assert not any(held in m for m in after)
    assert ready_after == 503
    assert any("hung is stale" in p for p in body["problems"])
    assert "DOWN" in landing and "hung" in landing
    assert hung.calls == 3  # two answers and one call that never returned


def test_extra_ready_checks_are_combined_with_the_samplers():
    async def scenario():
        sampler = Sampler([CountingSource()], interval=0.05)
        checks = [lambda: (False, ["harness still warming up"])]
        async with serving(sampler, ready_checks=checks) as client:
            await wait_for(lambda: sampler.snapshot is not None)
            resp = await client.get("/readyz")
            return resp.status, await resp.json()

    status, body = asyncio.run(scenario())
    assert status == 503
    assert body["problems"] == ["harness still warming up"]


def test_landing_page_links_the_endpoints_and_lists_sources():
    async def scenario():
        sampler = Sampler([CountingSource("simulated")], interval=0.05)
        async with serving(sampler) as client:
            await wait_for(lambda: sampler.snapshot is not None)
            resp = await client.get("/")
            return resp.headers["Content-Type"], await resp.text()

    ctype, page = asyncio.run(scenario())
    assert ctype.startswith("text/html")
    for link in ('href="/metrics"', 'href="/healthz"', 'href="/readyz"'):
        assert link in page
    assert "simulated" in page and ">up<" in page


@pytest.mark.parametrize(
    "header,gzip_ok",
    [
        ("gzip", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("GZIP; Q=0.3", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("*, gzip;q=0", False),  # an explicit refusal wins over the wildcard
        ("gzip;q=0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("gzip;q=nope", False),
        ("", False),
    ],
)
def test_accepts_gzip(header, gzip_ok):
    assert accepts_gzip(header) is gzip_ok


def test_a_client_that_refuses_gzip_gets_plain_bytes():
    async def scenario():
        sampler = Sampler([CountingSource()], interval=0.05)
        async with serving(sampler) as client:
            await wait_for(lambda: sampler.snapshot is not None)
            answers = []
            for encoding in ("gzip;q=0", "*, gzip;q=0", "gzip"):
                resp = await client.session.get(
                    client.make_url("/metrics"),
                    headers={"Accept-Encoding": encoding},
                    auto_decompress=False,
                )
                answers.append((resp.headers.get("Content-Encoding"), (await resp.read())[:2]))
            return answers

    (enc1, head1), (enc2, head2), (enc3, head3) = asyncio.run(scenario())
    assert enc1 is None and enc2 is None and head1 == head2 == b"# "
    assert enc3 == "gzip" and head3 == b"\x1f\x8b"


def test_every_scrape_gets_the_latest_snapshot_rendered_ahead_or_on_request():
    async def scenario():
        sampler = Sampler([CountingSource()], interval=1)
        async with serving(sampler, run_sampler=False) as client:
            seen = []
            for _ in range(4):
                snapshot = await sampler.cycle()
                ahead = snapshot.has((Format.OPENMETRICS, True))
                resp = await client.get(
                    "/metrics", headers={"Accept": OPENMETRICS_ACCEPT, "Accept-Encoding": "gzip"}
                )
                body = parse_om_families(await resp.text())
                seen.append((ahead, body, snapshot.collected_at))
                await asyncio.sleep(0.01)
            return seen

    seen = asyncio.run(scenario())
    assert [ahead for ahead, _, _ in seen] == [False, False, True, True]  # learned after two
    for n, (_, body, collected_at) in enumerate(seen, start=1):
        assert body["exporter_last_collect_timestamp_seconds"] == collected_at
        assert body["gpu_temperature_celsius"] == n  # this cycle's value, never an older one
