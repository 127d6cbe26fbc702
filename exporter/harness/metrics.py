"""What the harness records: latency histograms, token and outcome counters, queue and KV gauges.

Torch-free and thread-safe: the engine thread records (once per step, under one lock, appends
and additions only), the sampler's thread reads a consistent `snapshot()` (and does the
bucketing), and an HTTP front end (admission control) can
count the requests it refuses with `count_outcome`. `NullMetrics` records nothing, for measuring
what recording costs.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass

from exporter import catalog
from exporter.harness.sequence import Outcome

#: Values a histogram holds before it sorts them into buckets (bounds memory without a reader).
FOLD_AT = 4096


class Histogram:
    """Counts per bucket upper bound (Prometheus `le` semantics) and a sum; not locked itself.

    `add` only appends: values are sorted into buckets when read (by the sampler's thread, once
    per collection) or when FOLD_AT are pending, so the engine thread's share stays an append.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._pending: list[float] = []

    def add(self, values: list[float]) -> None:
        self._pending += values
        if len(self._pending) >= FOLD_AT:
            self._fold()

    def observe(self, value: float) -> None:
        self.add([value])

    @property
    def sum(self) -> float:
        self._fold()
        return self._sum

    def cumulative(self) -> tuple[tuple[float, float], ...]:
        """(upper bound, count of values at or below it) for each bound, then +Inf."""
        self._fold()
        out, total = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return tuple(out)

    def _fold(self) -> None:
        pending = self._pending
        if pending:
            counts, bounds = self.counts, self.bounds
            for value in pending:
                counts[bisect_left(bounds, value)] += 1
            self._sum += sum(pending)
            self._pending = []


@dataclass(frozen=True)
class ModelInfo:
    model: str
    dtype: str
    device: str


@dataclass(frozen=True)
class KVGauges:
    blocks_total: int
    blocks_used: int
    block_size: int
    stored_tokens: int

    @property
    def utilization(self) -> float:
        """Used blocks over all blocks."""
        return self.blocks_used / self.blocks_total if self.blocks_total else 0.0

    @property
    def fragmentation(self) -> float:
        """Share of the slots in used blocks that hold no token (0 when nothing is used)."""
        slots = self.blocks_used * self.block_size
        return 1.0 - self.stored_tokens / slots if slots else 0.0


@dataclass(frozen=True)
class MetricsSnapshot:
    """A consistent copy of every figure, for the harness source."""

    ttft: tuple[tuple[float, float], ...]
    ttft_sum: float
    tpot: tuple[tuple[float, float], ...]
    tpot_sum: float
    e2e: tuple[tuple[float, float], ...]
    e2e_sum: float
    queue: tuple[tuple[float, float], ...]
    queue_sum: float
    outcomes: dict[str, int]
    prompt_tokens: int
    generation_tokens: int
    preemptions: int
    running: int
    waiting: int
    kv: KVGauges | None
    ready: bool
    model: ModelInfo | None
    failed: bool = False


class HarnessMetrics:
    """The harness's figures. Record from any thread; read with `snapshot()`."""

    enabled = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ttft = Histogram(catalog.INFERENCE_TIME_TO_FIRST_TOKEN.buckets)
        self.tpot = Histogram(catalog.INFERENCE_TIME_PER_OUTPUT_TOKEN.buckets)
        self.e2e = Histogram(catalog.INFERENCE_REQUEST_DURATION.buckets)
        self.queue = Histogram(catalog.INFERENCE_QUEUE_DURATION.buckets)
        self.outcomes = {o.value: 0 for o in Outcome}
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.running = 0
        self.waiting = 0
        self.blocks_total = 0  # 0: no KV pool yet
        self.block_size = 0
        self.blocks_used = 0
        self.stored_tokens = 0
        self.ready = False
        self.failed = False
        self.model: ModelInfo | None = None

    def record_step(
        self,
        queue_times: list[float],
        ttfts: list[float],
        token_gaps: list[float],
        durations: list[float],
        outcomes: list[str],
        prompt_tokens: int,
        generation_tokens: int,
        preemptions: int,
        running: int,
        waiting: int,
        blocks_used: int,
        stored_tokens: int,
    ) -> None:
        """Everything one engine step observed, under one lock acquisition (positional and
        list-typed: this runs once per step, its cost is measured by bench/harness.py)."""
        with self._lock:
            if queue_times:
                self.queue.add(queue_times)
            if ttfts:
                self.ttft.add(ttfts)
            if token_gaps:
                self.tpot.add(token_gaps)
            if durations:
                self.e2e.add(durations)
            for o in outcomes:
                self.outcomes[o] += 1
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generation_tokens
            self.preemptions += preemptions
            self.running = running
            self.waiting = waiting
            self.blocks_used = blocks_used
            self.stored_tokens = stored_tokens

    def set_kv_pool(self, blocks_total: int, block_size: int) -> None:
        """The KV pool exists: its gauges are exported from now on."""
        with self._lock:
            self.blocks_total, self.block_size = blocks_total, block_size

    def count_outcome(self, outcome: str, n: int = 1) -> None:
        """Count requests that ended outside the engine (rejected or shed at the edge)."""
        if outcome not in self.outcomes:
            raise ValueError(f"unknown outcome {outcome!r}: one of {sorted(self.outcomes)}")
        with self._lock:
            self.outcomes[outcome] += n

    def set_model(self, info: ModelInfo) -> None:
        with self._lock:
            self.model = info

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            self.ready = ready

    def set_failed(self) -> None:
        """The engine failed for good: not ready, and failed, until the process restarts."""
        with self._lock:
            self.ready, self.failed = False, True

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                ttft=self.ttft.cumulative(),
                ttft_sum=self.ttft.sum,
                tpot=self.tpot.cumulative(),
                tpot_sum=self.tpot.sum,
                e2e=self.e2e.cumulative(),
                e2e_sum=self.e2e.sum,
                queue=self.queue.cumulative(),
                queue_sum=self.queue.sum,
                outcomes=dict(self.outcomes),
                prompt_tokens=self.prompt_tokens,
                generation_tokens=self.generation_tokens,
                preemptions=self.preemptions,
                running=self.running,
                waiting=self.waiting,
                kv=KVGauges(
                    self.blocks_total, self.blocks_used, self.block_size, self.stored_tokens
                )
                if self.blocks_total
                else None,
                ready=self.ready,
                model=self.model,
                failed=self.failed,
            )


class NullMetrics(HarnessMetrics):
    """Records no per-step figures (ready, model and outcomes still set): the baseline for
    measuring what recording costs."""

    enabled = False

    def record_step(self, *_: object) -> None:  # type: ignore[override]
        return None
