"""Admission control: what a request must pass before it reaches the engine.

In order: a token budget per request (prompt over it: 413; max_tokens over it: 400), then the
engine's state (not ready, KV cache nearly full, queue full: 503 with Retry-After). Every
refusal is counted in inference_requests_total (`rejected` or `shed`) by the API's handler.
Torch-free: it reads the engine's `stats` and `ready`, which any thread may read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from exporter.harness.api.errors import ApiError
from exporter.harness.sequence import Outcome


class EngineState(Protocol):
    """What admission reads from the engine (exporter.harness.engine.EngineStats)."""

    @property
    def waiting(self) -> int: ...

    @property
    def kv_utilization(self) -> float: ...


@dataclass(frozen=True)
class AdmissionLimits:
    """The guard rails; the defaults are `serve`'s."""

    max_prompt_tokens: int = 512
    max_tokens: int = 256
    shed_kv_utilization: float = 0.9  # shed new requests at or above this KV cache use
    max_waiting: int = 32  # requests admitted and not yet started that the queue may hold
    request_timeout: float | None = 5.0  # seconds from arrival to the last token
    retry_after: int = 1  # seconds; Retry-After is drawn from [retry_after, 2 * retry_after]

    def __post_init__(self) -> None:
        if self.max_prompt_tokens < 1 or self.max_tokens < 1:
            raise ValueError("the token budgets must be at least 1")
        if not 0 < self.shed_kv_utilization <= 1:
            raise ValueError("the shedding threshold is a KV cache utilization in (0, 1]")
        if self.max_waiting < 0:
            raise ValueError("max_waiting must not be negative")
        if self.request_timeout is not None and self.request_timeout <= 0:
            raise ValueError("the request timeout must be positive")
        if self.retry_after < 1:
            raise ValueError("retry_after is at least 1 second")


class Admission:
    """Applies the limits; counts the requests admitted and still waiting for their first
    token, which bounds the queue at once (the engine's own figure lags by one step)."""

    def __init__(self, limits: AdmissionLimits, rng: random.Random | None = None) -> None:
        self.limits = limits
        self.queued = 0
        self._rng = rng or random.Random()

    def check_budget(self, prompt_tokens: int, max_tokens: int) -> None:
        """The per-request token budget: raise ApiError 413 or 400 (counted as rejected)."""
        limits = self.limits
        if prompt_tokens > limits.max_prompt_tokens:
            raise ApiError(
                413,
                f"the prompt is {prompt_tokens} tokens; this server accepts at most "
                f"{limits.max_prompt_tokens} prompt tokens per request",
                "prompt_too_long",
                "prompt",
            )
        if max_tokens > limits.max_tokens:
            raise ApiError(
                400,
                f"max_tokens is {max_tokens}; this server generates at most "
                f"{limits.max_tokens} tokens per request",
                "max_tokens_too_large",
                "max_tokens",
            )

    def check_load(self, ready: bool, stats: EngineState) -> None:
        """Shed when the engine cannot take the request now: raise ApiError 503 with
        Retry-After (counted as shed)."""
        limits = self.limits
        if not ready:
            raise self._shed("the model is loading or warming up; retry shortly", "not_ready")
        if stats.kv_utilization >= limits.shed_kv_utilization:
            raise self._shed(
                f"the KV cache is {stats.kv_utilization:.0%} full (requests are shed from "
                f"{limits.shed_kv_utilization:.0%}); retry later",
                "kv_cache_full",
            )
        waiting = max(self.queued, stats.waiting)
        if waiting >= limits.max_waiting:
            raise self._shed(
                f"the queue is full ({waiting} requests waiting, at most {limits.max_waiting}); "
                "retry later",
                "queue_full",
            )

    def retry_after(self) -> int:
        """Whole seconds, spread so refused clients do not come back in one wave."""
        base = self.limits.retry_after
        return self._rng.randint(base, 2 * base)

    def _shed(self, message: str, code: str) -> ApiError:
        headers = {"Retry-After": str(self.retry_after())}
        return ApiError(503, message, code, None, Outcome.SHED, headers)
