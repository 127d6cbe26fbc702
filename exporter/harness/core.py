"""The synchronous engine: requests in, one scheduled model step at a time, updates out.

Single-threaded by design: `Engine` runs it on its own thread; tests and benchmarks can drive
it step by step. Every way a request ends goes through `_end`, which frees its KV blocks and
counts its outcome, so a finished, aborted, timed-out or failed request can never leak blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from typing import Protocol

from exporter.harness.metrics import HarnessMetrics
from exporter.harness.scheduler import Scheduler
from exporter.harness.sequence import Outcome, Sequence
from exporter.harness.tokenizer import EOS, VOCAB_SIZE

log = logging.getLogger(__name__)


class RequestRejected(ValueError):
    """The request can never be served (too long for the model or the KV cache, no tokens)."""


class StepRunner(Protocol):
    def run(self, seqs: Seq[Sequence]) -> list[int]: ...


@dataclass(frozen=True)
class Update:
    """What happened to one request in a step: a new token, its end, or both."""

    seq: Sequence
    token: int | None
    at: float
    outcome: Outcome | None = None  # set when the request ended
    error: str = ""


class EngineCore:
    def __init__(
        self,
        runner: StepRunner,
        scheduler: Scheduler,
        metrics: HarnessMetrics,
        *,
        max_seq_len: int,
        vocab_size: int = VOCAB_SIZE,
        eos: int = EOS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.metrics = metrics
        self.max_seq_len = max_seq_len
        self.vocab_size = vocab_size
        self.eos = eos
        self.clock = clock
        self.sequences: dict[int, Sequence] = {}
        self.steps = 0
        # With `timing` on (bench/harness.py), the engine thread's CPU time in step(), and the
        # part of it spent handing figures to the recorder. CPU time, not wall time: waiting
        # for the GIL while the event loop runs is nobody's cost. Off by default: no clock
        # reads on the hot path.
        self.timing = False
        self.busy_seconds = 0.0
        self.metrics_seconds = 0.0
        self._ended_outcomes: list[str] = []
        self._ended_durations: list[float] = []
        metrics.set_kv_pool(scheduler.allocator.num_total, scheduler.block_size)

    # --- requests in -------------------------------------------------------------------------

    def problem(self, seq: Sequence) -> str:
        """Why `seq` can never be served ("" when it can): checkable before queueing it."""
        if seq.num_prompt < 1 or seq.max_tokens < 1:
            return "a request needs at least one prompt token and max_tokens of at least 1"
        if seq.num_prompt + seq.max_tokens > self.max_seq_len:
            return (
                f"{seq.num_prompt} prompt + {seq.max_tokens} new tokens exceed the model's "
                f"context of {self.max_seq_len} tokens"
            )
        if not all(0 <= t < self.vocab_size for t in seq.token_ids):
            return f"prompt token ids must lie in [0, {self.vocab_size})"
        capacity = self.scheduler.max_tokens_per_sequence
        if seq.num_prompt + seq.max_tokens > capacity:
            return (
                f"{seq.num_prompt} prompt + {seq.max_tokens} new tokens exceed the KV cache "
                f"({capacity} tokens)"
            )
        return ""

    def add(self, seq: Sequence) -> None:
        """Queue a request, or raise RequestRejected (counted) when it can never be served."""
        problem = self.problem(seq)
        if problem:
            self.metrics.count_outcome(Outcome.REJECTED)
            raise RequestRejected(problem)
        self.scheduler.add(seq)
        self.sequences[seq.request_id] = seq

    def abort(self, request_id: int, outcome: Outcome = Outcome.CANCELLED) -> Update | None:
        """End a queued or running request now; None when it already ended."""
        seq = self.sequences.get(request_id)
        if seq is None:
            return None
        return self._end(seq, outcome, self.clock())

    def expire(self) -> list[Update]:
        """End every request whose deadline has passed, queued or running."""
        now = self.clock()
        late = [s for s in self.sequences.values() if s.deadline is not None and s.deadline <= now]
        return [self._end(s, Outcome.TIMEOUT, now) for s in late]

    def has_work(self) -> bool:
        return self.scheduler.has_work()

    # --- one step ----------------------------------------------------------------------------

    def step(self) -> list[Update]:
        """Schedule, run the model once for prefills and once for decodes, sample, finish."""
        t0 = time.thread_time() if self.timing else 0.0
        rec = self.metrics.enabled
        started = self.clock()
        plan = self.scheduler.schedule()
        queue_times: list[float] = []
        prompt_tokens = 0
        for seq in plan.prefill:
            if seq.first_scheduled is None:
                seq.first_scheduled = started
                prompt_tokens += seq.num_prompt
                if rec:
                    queue_times.append(started - seq.arrival)
        batch = [*plan.prefill, *plan.decode]
        updates: list[Update] = []
        ttfts: list[float] = []
        gaps: list[float] = []
        if batch:
            try:
                tokens = self.runner.run(plan.prefill) if plan.prefill else []
                if plan.decode:
                    tokens += self.runner.run(plan.decode)
            except Exception as exc:
                log.exception("model step failed; failing its %d requests", len(batch))
                now = self.clock()
                message = f"model step failed: {type(exc).__name__}: {exc}"
                updates = [self._end(s, Outcome.ERROR, now, message) for s in batch]
            else:
                now = self.clock()
                for seq, token in zip(batch, tokens, strict=True):
                    seq.num_cached = seq.num_tokens
                    seq.token_ids.append(token)
                    if seq.first_token_at is None:
                        seq.first_token_at = now
                        if rec:
                            ttfts.append(now - seq.arrival)
                    elif rec:
                        gaps.append(now - (seq.last_token_at or now))
                    seq.last_token_at = now
                    if token == self.eos and not seq.ignore_eos:
                        seq.finish_reason = "stop"
                    elif seq.num_output >= seq.max_tokens or seq.num_tokens >= self.max_seq_len:
                        seq.finish_reason = "length"
                    if seq.finish_reason:
                        updates.append(self._end(seq, Outcome.OK, now, token=token))
                    else:
                        updates.append(Update(seq, token, now))
        self.steps += 1
        self._record(
            queue_times,
            ttfts,
            gaps,
            prompt_tokens,
            len(ttfts) + len(gaps),
            len(plan.preempted),
        )
        if self.timing:
            self.busy_seconds += time.thread_time() - t0
        return updates

    def record_idle(self) -> None:
        """Publish the gauges (and the outcomes of requests ended outside a step)."""
        self._record()

    # --- figures -----------------------------------------------------------------------------

    def _record(
        self,
        queue_times: list[float] | None = None,
        ttfts: list[float] | None = None,
        token_gaps: list[float] | None = None,
        prompt_tokens: int = 0,
        generation_tokens: int = 0,
        preemptions: int = 0,
    ) -> None:
        if not self.metrics.enabled:
            return
        t0 = time.thread_time() if self.timing else 0.0
        scheduler = self.scheduler
        stored = 0
        for seq in scheduler.running:
            stored += seq.num_cached
        self.metrics.record_step(
            queue_times or [],
            ttfts or [],
            token_gaps or [],
            self._ended_durations,
            self._ended_outcomes,
            prompt_tokens,
            generation_tokens,
            preemptions,
            len(scheduler.running),
            len(scheduler.waiting),
            scheduler.allocator.num_used,
            stored,
        )
        self._ended_outcomes, self._ended_durations = [], []
        if self.timing:  # minus one clock read, timed right after in the same state
            t1 = time.thread_time()
            self.metrics_seconds += (t1 - t0) - (time.thread_time() - t1)

    def _end(
        self,
        seq: Sequence,
        outcome: Outcome,
        now: float,
        error: str = "",
        token: int | None = None,
    ) -> Update:
        self.scheduler.remove(seq)
        del self.sequences[seq.request_id]
        if self.metrics.enabled:
            self._ended_outcomes.append(outcome.value)
            self._ended_durations.append(now - seq.arrival)
        return Update(seq, token, now, outcome, error)
