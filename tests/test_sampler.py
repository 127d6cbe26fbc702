"""The sampler isolates failing, hanging and misbehaving sources and reports them as metrics."""

import asyncio

import pytest

from exporter.exposition import Format
from exporter.sampler import ERROR_REASONS, Sampler
from exporter.samples import Sample
from tests.clock import Clock
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


def test_a_steady_scraper_finds_its_variant_rendered_and_nothing_else_is_rendered():
    """1 s cycles, a Prometheus-like scraper every 15 s: one render per scrape, done ahead."""
    clock = Clock(0.0)
    sampler = Sampler([CountingSource()], interval=1, clock=clock)
    om_gz = (Format.OPENMETRICS, True)
    rendered_ahead, found_rendered = [], []
    for second in range(76):
        clock.now = float(second)
        snapshot = run(sampler.cycle())
        rendered_ahead.append(snapshot.has(om_gz))
        clock.now = second + 0.3
        if second % 15 == 0:  # the scrape: was it rendered before it came?
            found_rendered.append(snapshot.has(om_gz))
            sampler.note_request(om_gz, "10.0.0.7")
            snapshot.body(*om_gz)
    assert found_rendered == [False, False, True, True, True, True]  # from its third request
    assert [s for s, r in enumerate(rendered_ahead) if r] == [30, 45, 60, 75]
    assert not snapshot.has((Format.TEXT, False))


def test_scrapers_at_other_phases_and_back_to_back_ones_are_each_served_ahead():
    clock = Clock(0.0)
    sampler = Sampler([CountingSource()], interval=1, clock=clock)
    om_gz, text = (Format.OPENMETRICS, True), (Format.TEXT, False)
    found = {"a": [], "b": []}
    for second in range(62):
        clock.now = float(second)
        snapshot = run(sampler.cycle())
        for peer, phase in (("a", 0.1), ("b", 7.6)):  # two Prometheus replicas, 15 s apart
            if (second - int(phase)) % 15 == 0 and second >= int(phase):
                clock.now = second + phase % 1
                found[peer].append(snapshot.has(om_gz))
                sampler.note_request(om_gz, peer)
    assert found == {"a": [False, False, True, True, True], "b": [False, False, True, True]}
    for cycle in range(4):  # a client asking back to back: every snapshot from its second request
        snapshot = run(sampler.cycle())
        assert snapshot.has(text) is (cycle > 0)
        for _ in range(3):
            sampler.note_request(text, "127.0.0.1")
            clock.advance(0.001)
        clock.advance(1)
    clock.advance(5)  # it stopped asking: no more renders for it
    assert not run(sampler.cycle()).has(text)


def test_a_source_that_misses_collections_keeps_its_last_series_for_keep_series_intervals():
    flaky = ListSource("flaky", [temperature("3", 42.0)])
    sampler = Sampler([CountingSource(), flaky], interval=1, keep_series=2)
    held = ("gpu_temperature_celsius", (("gpu", "3"), ("sensor", "gpu"), ("uuid", "GPU-3")))

    async def scenario():
        results = [metrics_of(await sampler.cycle())]
        flaky.samples = [Sample("gpu_up", (("uuid", "x"),), 1.0)]  # now every answer is invalid
        for _ in range(3):
            results.append(metrics_of(await sampler.cycle()))
        flaky.samples = [temperature("3", 43.0)]
        results.append(metrics_of(await sampler.cycle()))
        return results

    ok, miss1, miss2, miss3, back = run(scenario())
    assert ok[held] == miss1[held] == miss2[held] == 42.0  # the last good value, kept
    assert held not in miss3  # kept for 2 intervals only
    assert back[held] == 43.0
    up = ("exporter_source_up", (("source", "flaky"),))
    errors = ("exporter_collect_errors_total", (("reason", "invalid"), ("source", "flaky")))
    assert [m[up] for m in (ok, miss1, miss2, miss3, back)] == [1, 0, 0, 0, 1]
    assert [m[errors] for m in (ok, miss1, miss2, miss3, back)] == [0, 1, 2, 3, 3]


def test_a_hung_source_keeps_its_series_for_keep_series_cycles_then_drops_them():
    hung = HangingSource(answers=1)
    sampler = Sampler([CountingSource(), hung], interval=0.05, timeout=0.05)  # default: 3
    held = ("gpu_temperature_celsius", (("gpu", "1"), ("sensor", "gpu"), ("uuid", "GPU-1")))

    async def scenario():
        return [metrics_of(await sampler.cycle()) for _ in range(6)]

    try:
        results = run(scenario())
    finally:
        hung.release.set()
    assert [held in m for m in results] == [True, True, True, True, False, False]
    assert {m[held] for m in results[:4]} == {1.0}
    up = ("exporter_source_up", (("source", "hung"),))
    assert [m[up] for m in results] == [1, 0, 0, 0, 0, 0]


def test_an_unchanged_series_set_is_validated_once_and_reuses_its_layout(monkeypatch):
    from exporter import sampler as sampler_module

    validated = []
    real = sampler_module._validate
    # (non-empty calls only: a hung source of an earlier test may return [] meanwhile)
    monkeypatch.setattr(
        sampler_module, "_validate", lambda s: (s and validated.append(len(s))) or real(s)
    )
    source = CountingSource()
    sampler = Sampler([source], interval=1)
    first, second = run(sampler.cycle()), run(sampler.cycle())
    assert validated == [1]
    assert second.layout is first.layout
    assert metrics_of(second) != metrics_of(first)  # new values in the same layout
    source.gpu = "5"  # a new series: validated, new layout
    third = run(sampler.cycle())
    assert validated == [1, 1] and third.layout is not first.layout
    assert ("gpu_temperature_celsius", (("gpu", "5"), ("sensor", "gpu"), ("uuid", "GPU-5"))) in (
        metrics_of(third)
    )


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


def test_keep_series_is_a_flag_with_a_default_of_3_explained_in_help():
    from exporter.cli import build_parser, with_environment
    from exporter.runtime import build_runtime

    parser = build_parser()
    args = parser.parse_args(with_environment(["serve", "--no-harness"], parser, {}))
    assert args.keep_series == 3
    env = {"GIE_COLLECT_KEEP_SERIES": "5"}
    args = parser.parse_args(with_environment(["serve", "--no-harness"], parser, env))
    assert build_runtime(backend="none", args=args, const_labels=()).sampler.keep_series == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--collect.keep-series=-1"])
    serve = next(
        a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("serve")
    )
    text = " ".join(serve.format_help().split())
    assert "--collect.keep-series" in text and "GIE_COLLECT_KEEP_SERIES" in text
    assert "exporter_source_up 0" in text


def test_a_sample_at_its_own_value_is_handed_out_again_and_a_new_value_makes_a_new_one():
    first = Sample("gpu_up", (("gpu", "0"),), 1.0)
    assert first.with_value(1.0) is first
    moved = first.with_value(0.0)
    assert moved is not first and (moved.name, moved.labels, moved.value) == (
        "gpu_up",
        first.labels,
        0.0,
    )
    assert first.value == 1.0  # the kept sample never changes
    nan = Sample("gpu_power_watts", (), float("nan"))
    assert (
        nan.with_value(float("nan")) is not nan
    )  # NaN equals nothing: a fresh sample, never wrong
