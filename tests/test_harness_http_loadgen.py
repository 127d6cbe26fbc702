"""The synthetic load generator: its length distributions, its Poisson arrivals, and a run
against the real API whose every outcome the server counted as the client saw it."""

import random
import statistics

import pytest

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.loadgen import (
    LoadGenerator,
    LoadProfile,
    parse_length_distribution,
    poisson_arrivals,
    prompt_text,
)
from exporter.harness.tokenizer import ByteTokenizer
from tests.harness_helpers import run
from tests.harness_http_helpers import moved, serving


@pytest.mark.parametrize(
    "text,kind,params",
    [
        ("64", "fixed", (64,)),
        ("fixed:8", "fixed", (8,)),
        ("uniform:16,256", "uniform", (16, 256)),
        ("exponential:100", "exponential", (100,)),
        ("lognormal:96,0.9", "lognormal", (96, 0.9)),
    ],
)
def test_length_distributions_parse_and_print_back(text, kind, params):
    dist = parse_length_distribution(text)
    assert (dist.kind, dist.params) == (kind, params)
    assert parse_length_distribution(str(dist)) == dist


@pytest.mark.parametrize(
    "text,words",
    [
        ("gauss:3", "use N, uniform:MIN,MAX"),
        ("uniform:10", "use N"),
        ("uniform:20,10", "MIN above MAX"),
        ("uniform:1.5,3", "whole numbers"),
        ("lognormal:0,1", "use N"),
        ("exponential:x", "use N"),
        ("-5", "use N"),
    ],
)
def test_bad_length_distributions_say_what_is_accepted(text, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")) as info:
        parse_length_distribution(text)
    assert repr(text) in str(info.value)


def test_length_samples_follow_their_distribution():
    rng = random.Random(1)
    n = 20_000

    def draw(text):
        dist = parse_length_distribution(text)
        return [dist.sample(rng) for _ in range(n)]

    assert set(draw("7")) == {7}
    uniform = draw("uniform:16,32")
    assert min(uniform) == 16 and max(uniform) == 32  # both ends, inclusive
    assert statistics.mean(uniform) == pytest.approx(24, rel=0.01)
    assert statistics.mean(draw("exponential:50")) == pytest.approx(50, rel=0.03)
    lognormal = draw("lognormal:96,0.9")
    assert statistics.median(lognormal) == pytest.approx(96, rel=0.03)
    assert max(lognormal) > 512  # a tail past a 512-token budget, as real prompts have
    assert min(draw("exponential:0.1")) == 1  # never an empty prompt or zero tokens


def test_arrivals_are_a_poisson_process():
    rng = random.Random(5)
    rate, horizon = 40.0, 500.0
    times = []
    for at in poisson_arrivals(rng, rate):
        if at > horizon:
            break
        times.append(at)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    # 20,000 expected; a Poisson count's standard deviation is its square root (141)
    assert abs(len(times) - rate * horizon) < 3 * (rate * horizon) ** 0.5
    assert statistics.mean(gaps) == pytest.approx(1 / rate, rel=0.03)
    # exponential gaps: standard deviation equal to the mean, and about 63% below the mean
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.03)
    assert sum(g < 1 / rate for g in gaps) / len(gaps) == pytest.approx(0.632, abs=0.02)


def test_prompts_have_the_drawn_number_of_tokens():
    rng = random.Random(0)
    tokenizer = ByteTokenizer()
    for n in (1, 2, 17, 300):
        assert len(tokenizer.encode(prompt_text(rng, n))) == n


def test_a_run_against_the_api_is_counted_by_the_server_as_the_client_saw_it():
    # One request at a time, a queue of one: 40 requests/s of 20-60 tokens is past what the
    # tiny model serves, so requests are shed; a quarter of the prompts are over the budget.
    limits = AdmissionLimits(max_prompt_tokens=64, max_waiting=1)
    profile = LoadProfile(
        rate=40,
        prompt_tokens=parse_length_distribution("lognormal:32,1.2"),
        max_tokens=parse_length_distribution("uniform:20,60"),
        seed=3,
    )

    async def scenario():
        async with serving(limits=limits, max_num_seqs=1) as s:
            before = s.counts()
            generator = LoadGenerator(s.server.url, profile, keep_results=True)
            stats = await generator.run(duration=1.5)
            await s.no_block_leaked()
            return stats, moved(before, s.counts())

    stats, counted = run(scenario())
    outcomes = dict(stats.outcomes)
    assert outcomes["ok"] > 0 and outcomes["rejected"] > 0 and outcomes["shed"] > 0, outcomes
    assert set(outcomes) <= {"ok", "rejected", "shed", "timeout"}, stats.results[:3]
    assert counted == {o: float(n) for o, n in outcomes.items()}
    assert stats.sent == len(stats.results) == sum(outcomes.values())
    for result in stats.results:
        if result.outcome == "ok":
            assert len(result.token_times) == result.max_tokens  # ignore_eos: every token
            assert result.ttft is not None and result.ttft > 0
            assert len(result.token_gaps) == result.max_tokens - 1
        elif result.outcome == "rejected":
            assert result.status == 413 and result.prompt_tokens > 64
        else:
            assert result.status == 503 and "queue is full" in result.error
    assert stats.tokens == sum(r.max_tokens for r in stats.results if r.outcome == "ok")
