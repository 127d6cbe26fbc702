"""The sampler isolates failing, hanging and misbehaving sources and reports them as metrics."""

import asyncio

import pytest

from exporter.exposition import Format
from exporter.sampler import ERROR_REASONS, Sampler
from exporter.samples import Sample
from tests.conftest import parse_metrics
from tests.fakes import (
    UNAVAILABLE,
    CountingSource,
    HangingSource,
    ListSource,
    RaisingSource,
    temperature,
)


def run(coro):
    return asyncio.run(coro)


def metrics_of(snapshot):
    return parse_metrics(snapshot.body(Format.TEXT).decode())


def test_a_cycle_publishes_every_source_and_the_exporters_own_families():
    good = CountingSource()
    sampler = Sampler([good], interval=1, gpu_backend="good")
    snap = run(sampler.cycle())
    m = metrics_of(snap)
    assert m[("gpu_temperature_celsius", (("gpu", "0"), ("sensor", "gpu"), ("uuid", "GPU-0")))] == 1
    assert m[("exporter_source_up", (("source", "good"),))] == 1
    assert m[("gpu_backend_up", (("backend", "good"),))] == 1
    for reason in ERROR_REASONS:
        assert m[("exporter_collect_errors_total", (("reason", reason), ("source", "good")))] == 0
    assert ("exporter_collect_duration_seconds", (("source", "good"),)) in m
    assert m[("exporter_last_collect_timestamp_seconds", ())] == pytest.approx(snap.collected_at)
    assert [k for k in m if k[0] == "exporter_build_info"]
    assert sampler.readiness() == (True, [])


def test_without_a_gpu_backend_gpu_backend_up_is_0_with_backend_none():
    snap = run(Sampler([], interval=1).cycle())
    assert metrics_of(snap)[("gpu_backend_up", (("backend", "none"),))] == 0


@pytest.mark.parametrize(
    "bad,reason",
    [
        (RaisingSource(), "error"),
        (RaisingSource(exc=UNAVAILABLE), "unavailable"),
        (ListSource("broken", [Sample("gpu_not_in_catalog", (), 1.0)]), "invalid"),
        (ListSource("broken", [temperature("2", 1), temperature("2", 2)]), "invalid"),
        (ListSource("broken", [Sample("gpu_up", (("uuid", "x"), ("gpu", "2")), 1.0)]), "invalid"),
    ],
)
def test_a_failing_source_is_down_and_counted_while_the_others_publish(bad, reason):
    good = CountingSource()
    sampler = Sampler([good, bad], interval=1, gpu_backend="broken")

    async def two_cycles():
        await sampler.cycle()
        return await sampler.cycle()

    m = metrics_of(run(two_cycles()))
    assert m[("exporter_source_up", (("source", "broken"),))] == 0
    assert m[("exporter_source_up", (("source", "good"),))] == 1
    assert m[("exporter_collect_errors_total", (("reason", reason), ("source", "broken")))] == 2
    assert m[("gpu_backend_up", (("backend", "broken"),))] == 0
    assert [k for k in m if k[0] == "gpu_temperature_celsius"] == [
        ("gpu_temperature_celsius", (("gpu", "0"), ("sensor", "gpu"), ("uuid", "GPU-0")))
    ]
    ready, problems = sampler.readiness()
    assert not ready and "broken" in problems[0]


def test_a_hung_source_times_out_is_never_called_twice_and_recovers_when_it_returns():
    hung = HangingSource(answers=1)
    good = CountingSource()
    sampler = Sampler([good, hung], interval=0.05, timeout=0.05)

    async def scenario():
        first = await sampler.cycle()  # hung answers once
        for _ in range(4):
            await sampler.cycle()
        during = sampler.snapshot
        calls = (good.calls, hung.calls)
        hung.release.set()  # the driver call finally returns
        await asyncio.sleep(0.05)
        hung.answers = 100
        after = await sampler.cycle()
        return first, during, after, calls

    first, during, after, (good_calls, hung_calls) = run(scenario())
    assert metrics_of(first)[("exporter_source_up", (("source", "hung"),))] == 1
    m = metrics_of(during)
    assert m[("exporter_source_up", (("source", "hung"),))] == 0
    assert m[("exporter_collect_errors_total", (("reason", "timeout"), ("source", "hung")))] == 4
    assert m[("exporter_collect_duration_seconds", (("source", "hung"),))] == 0.05
    assert m[("exporter_source_up", (("source", "good"),))] == 1
    assert good_calls == 5
    assert hung_calls == 2  # one answer, then one call that hung: never a second stacked call
    assert metrics_of(after)[("exporter_source_up", (("source", "hung"),))] == 1


def test_readiness_fails_once_a_source_is_staler_than_three_intervals():
    now = [100.0]
    hung = HangingSource(answers=1)
    sampler = Sampler([hung], interval=1.0, timeout=0.01, clock=lambda: now[0])

    async def scenario():
        assert sampler.readiness() == (False, ["no snapshot collected yet"])
        await sampler.cycle()
        results = []
        for t in (101.0, 102.0, 103.0, 103.5):
            now[0] = t
            await sampler.cycle()
            results.append(sampler.readiness())
        return results

    results = run(scenario())
    hung.release.set()
    assert [ok for ok, _ in results] == [True, True, True, False]
    assert "stale" in results[-1][1][0] and "hung" in results[-1][1][0]


def test_variants_scrapers_asked_for_are_prerendered_until_nobody_asks():
    now = [0.0]
    sampler = Sampler([CountingSource()], interval=1, clock=lambda: now[0])
    om_gz = (Format.OPENMETRICS, True)
    assert not run(sampler.cycle()).has(om_gz)
    sampler.note_request(om_gz)
    assert run(sampler.cycle()).has(om_gz)
    assert not sampler.snapshot.has((Format.TEXT, False))
    now[0] = 601.0
    assert not run(sampler.cycle()).has(om_gz)


def test_duplicate_source_names_and_unknown_backend_are_refused():
    with pytest.raises(ValueError, match="unique"):
        Sampler([CountingSource("a"), CountingSource("a")])
    with pytest.raises(ValueError, match="not one of the sources"):
        Sampler([CountingSource("a")], gpu_backend="b")


def test_close_closes_every_source_even_when_one_fails():
    class BadClose(CountingSource):
        def close(self):
            raise RuntimeError("boom")

    a, b = BadClose("a"), CountingSource("b")
    Sampler([a, b]).close()
    assert b.closed
