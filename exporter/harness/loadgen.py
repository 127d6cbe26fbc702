"""A synthetic load generator: Poisson arrivals against the harness's HTTP API.

`--harness.load RATE` runs it inside `serve` (the demo, and a canary on a real node: the guard
rails and the latency figures move as a client's requests would move them);
bench/harness_http.py drives the same generator from outside. Each request is a streamed
completion with `ignore_eos` so its length follows the configured distribution; prompt and
output lengths are drawn per request, and a value beyond the server's budget is sent anyway
(and refused, as a real client's would be). The generator never retries: a refused request is
counted, not repeated.

Torch-free: it is an HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)

#: What a request came to, seen from the client (the first six are inference_requests_total's
#: outcomes; `failed`: no HTTP answer; `skipped`: not sent, too many already in flight).
CLIENT_OUTCOMES = ("ok", "rejected", "shed", "timeout", "error", "cancelled", "failed", "skipped")


@dataclass(frozen=True)
class LengthDistribution:
    """Token counts drawn per request: fixed, uniform, exponential or lognormal."""

    kind: str
    params: tuple[float, ...]

    def sample(self, rng: random.Random) -> int:
        p = self.params
        if self.kind == "fixed":
            value = p[0]
        elif self.kind == "uniform":
            value = rng.randint(int(p[0]), int(p[1]))
        elif self.kind == "exponential":
            value = rng.expovariate(1 / p[0])
        else:  # lognormal: median, sigma
            value = rng.lognormvariate(math.log(p[0]), p[1])
        return max(1, round(value))

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(f'{v:g}' for v in self.params)}"


_DISTRIBUTIONS = {"fixed": 1, "uniform": 2, "exponential": 1, "lognormal": 2}


def parse_length_distribution(text: str) -> LengthDistribution:
    """`64` or `fixed:64`; `uniform:16,256` (inclusive); `exponential:MEAN`;
    `lognormal:MEDIAN,SIGMA`."""
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        kind, rest = "fixed", kind
    usage = (
        f"invalid length distribution {text!r}: use N, uniform:MIN,MAX, exponential:MEAN or "
        "lognormal:MEDIAN,SIGMA"
    )
    if kind not in _DISTRIBUTIONS:
        raise ValueError(usage)
    try:
        params = tuple(float(v) for v in rest.split(","))
    except ValueError:
        raise ValueError(usage) from None
    if len(params) != _DISTRIBUTIONS[kind] or not all(v > 0 and math.isfinite(v) for v in params):
        raise ValueError(usage)
    if kind == "uniform" and params[0] > params[1]:
        raise ValueError(f"{usage} (MIN above MAX)")
    if kind in ("fixed", "uniform") and not all(v == int(v) for v in params):
        raise ValueError(f"{usage} (whole numbers of tokens)")
    return LengthDistribution(kind, params)


@dataclass(frozen=True)
class LoadProfile:
    """What the generator sends: Poisson arrivals at `rate` requests/s, lengths per request."""

    rate: float
    prompt_tokens: LengthDistribution = field(
        default_factory=lambda: parse_length_distribution("uniform:16,256")
    )
    max_tokens: LengthDistribution = field(
        default_factory=lambda: parse_length_distribution("uniform:16,128")
    )
    seed: int | None = None
    max_in_flight: int = 1024  # beyond this many unanswered requests, arrivals are skipped

    def __post_init__(self) -> None:
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise ValueError("the load generator's rate must be a positive number of requests/s")


@dataclass
class RequestResult:
    """One request as the client saw it; times are time.perf_counter()."""

    outcome: str
    status: int  # 0 when there was no HTTP answer
    sent_at: float
    prompt_tokens: int
    max_tokens: int
    token_times: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] - self.sent_at if self.token_times else None

    @property
    def token_gaps(self) -> list[float]:
        t = self.token_times
        return [b - a for a, b in itertools.pairwise(t)]


@dataclass
class LoadStats:
    """Counts by client outcome; every result too when `keep_results` (bounded runs only)."""

    keep_results: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    results: list[RequestResult] = field(default_factory=list)

    def add(self, result: RequestResult) -> None:
        self.outcomes[result.outcome] += 1
        self.tokens += len(result.token_times)
        if self.keep_results:
            self.results.append(result)

    @property
    def sent(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o != "skipped")

    def summary(self) -> str:
        counts = ", ".join(f"{o} {self.outcomes[o]}" for o in CLIENT_OUTCOMES if self.outcomes[o])
        return f"{self.sent} requests ({counts or 'none'}), {self.tokens} tokens"


def poisson_arrivals(rng: random.Random, rate: float) -> Iterator[float]:
    """Arrival times (seconds from the start) of a Poisson process: exponential gaps of mean
    1/rate, each independent of the others and of how the server is doing (open loop)."""
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        yield at


def prompt_text(rng: random.Random, tokens: int) -> str:
    """A prompt of `tokens` tokens for the byte tokenizer: BOS and tokens - 1 printable bytes."""
    return "".join(rng.choices(_PRINTABLE, k=max(0, tokens - 1)))


_PRINTABLE = [chr(c) for c in range(32, 127)]


def outcome_of(status: int, body: dict[str, object] | None) -> str:
    """The client outcome of an error answer: an HTTP status, or an error event (status 200)."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if code in ("timeout", "cancelled"):
        return str(code)
    if status == 504:
        return "timeout"
    if status == 503:
        return "shed"
    if 400 <= status < 500:
        return "rejected"
    return "error"


class LoadGenerator:
    """Sends `profile` to `base_url` (http://host:port) until stopped or for a duration."""

    def __init__(
        self,
        base_url: str,
        profile: LoadProfile,
        *,
        keep_results: bool = False,
        log_every: float | None = None,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
    ) -> None:
        self.url = base_url.rstrip("/") + "/v1/completions"
        self.headers = headers or {}  # e.g. the credentials of a secured API
        self.verify_tls = verify_tls  # False: its own API on loopback, whatever its certificate
        self.profile = profile
        self.stats = LoadStats(keep_results)
        self.log_every = log_every
        self.in_flight = 0
        self._rng = random.Random(profile.seed)

    async def run(self, duration: float | None = None) -> LoadStats:
        """Send requests with Poisson arrivals for `duration` seconds (forever when None, until
        cancelled), then wait for the answers of those sent."""
        connector = aiohttp.TCPConnector(limit=0, ssl=None if self.verify_tls else False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self.headers
        ) as session:
            try:
                await self._arrivals(session, tasks, duration)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats

    async def _arrivals(
        self, session: aiohttp.ClientSession, tasks: set[asyncio.Task[None]], duration: float | None
    ) -> None:
        profile, rng = self.profile, self._rng
        started = time.perf_counter()
        logged, logged_stats = started, LoadStats()
        for next_at in poisson_arrivals(rng, profile.rate):
            if duration is not None and next_at > duration:
                return
            await asyncio.sleep(max(0.0, started + next_at - time.perf_counter()))
            prompt = profile.prompt_tokens.sample(rng)
            max_tokens = profile.max_tokens.sample(rng)
            if self.in_flight >= profile.max_in_flight:
                self.stats.add(RequestResult("skipped", 0, time.perf_counter(), prompt, max_tokens))
            else:
                text = prompt_text(rng, prompt)
                task = asyncio.create_task(self._one(session, text, prompt, max_tokens))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if self.log_every is not None and time.perf_counter() - logged >= self.log_every:
                logged, logged_stats = self._log(logged, logged_stats)

    def _log(self, since: float, before: LoadStats) -> tuple[float, LoadStats]:
        now = time.perf_counter()
        delta = LoadStats(outcomes=self.stats.outcomes - before.outcomes)
        delta.tokens = self.stats.tokens - before.tokens
        log.info("synthetic load, last %.0f s: %s", now - since, delta.summary())
        return now, LoadStats(outcomes=Counter(self.stats.outcomes), tokens=self.stats.tokens)

    async def _one(
        self, session: aiohttp.ClientSession, prompt: str, prompt_tokens: int, max_tokens: int
    ) -> None:
        self.in_flight += 1
        result = RequestResult("failed", 0, time.perf_counter(), prompt_tokens, max_tokens)
        try:
            await self.send(session, prompt, max_tokens, result)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight -= 1
            self.stats.add(result)

    async def send(
        self,
        session: aiohttp.ClientSession,
        prompt: str,
        max_tokens: int,
        result: RequestResult,
    ) -> None:
        """One streamed completion; fills `result` (outcome, status, token arrival times)."""
        body = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
        result.sent_at = time.perf_counter()
        async with session.post(self.url, json=body) as response:
            result.status = response.status
            if response.status != 200:
                with contextlib.suppress(ValueError, aiohttp.ContentTypeError):
                    answer = await response.json()
                    result.error = str(answer.get("error", {}).get("message", ""))
                    result.outcome = outcome_of(response.status, answer)
                    return
                result.outcome = outcome_of(response.status, None)
                return
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    if result.outcome == "failed":
                        result.outcome = "ok"
                    return
                event = json.loads(data)
                if "error" in event:
                    result.outcome = outcome_of(200, event)
                    result.error = str(event["error"].get("message", ""))
                    continue
                result.token_times.append(time.perf_counter())
        result.error = result.error or "the event stream ended without [DONE]"
