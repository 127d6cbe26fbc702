"""The embedding API: an engine on its own thread, awaited from asyncio.

    async with Engine(EngineConfig(preset="tiny")) as engine:
        done = await engine.generate("Hello", max_tokens=32, timeout=5.0)
        async for chunk in engine.stream("Hello", max_tokens=32):
            print(chunk.text, end="")

The model step never runs on the event loop: requests and aborts go to the engine thread
through an inbox, tokens come back to each request's own loop once per step. Cancelling the
task that awaits `generate` or iterates `stream` (a client that went away) aborts the request
and frees its KV blocks at the engine's next step; `abort(request_id)` does the same from any
task or thread. A request's `timeout` is a deadline the engine enforces, queued or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from exporter.harness.build import build_core
from exporter.harness.config import EngineConfig, ModelConfig
from exporter.harness.core import EngineCore, RequestRejected, Update
from exporter.harness.metrics import HarnessMetrics, ModelInfo, NullMetrics
from exporter.harness.sequence import Outcome, Sequence
from exporter.harness.tokenizer import ByteTokenizer

__all__ = [
    "Completion",
    "Engine",
    "EngineError",
    "EngineFailed",
    "EngineStats",
    "RequestCancelled",
    "RequestRejected",
    "RequestTimeout",
    "StreamChunk",
    "TokenStream",
]

log = logging.getLogger(__name__)

WARMUP_PROMPT = "warm-up"
WARMUP_TOKENS = 4


class EngineError(RuntimeError):
    """The engine failed to start, stopped, or failed the model step of this request."""


class EngineFailed(EngineError):
    """The engine failed (at start or while serving) and serves nothing until restarted."""


class RequestTimeout(TimeoutError):
    """The request's deadline passed before it completed (its blocks are freed)."""


class RequestCancelled(Exception):
    """The request was aborted (`Engine.abort`, or the engine stopping)."""


@dataclass(frozen=True)
class StreamChunk:
    """One generated token; `finish_reason` is set on the last one (stop or length)."""

    token_id: int
    text: str
    at: float  # engine clock (time.perf_counter) when the token became available
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    """A finished request, with the timings the engine's metrics were recorded from."""

    request_id: int
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    arrival: float
    first_scheduled: float
    token_times: list[float]
    finished: float
    preemptions: int

    @property
    def queue_seconds(self) -> float:
        return self.first_scheduled - self.arrival

    @property
    def ttft_seconds(self) -> float:
        return self.token_times[0] - self.arrival

    @property
    def token_gaps(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.token_times)]

    @property
    def duration_seconds(self) -> float:
        return self.finished - self.arrival


@dataclass(frozen=True)
class EngineStats:
    """A recent view of the engine, readable from any thread (for load shedding)."""

    running: int = 0
    waiting: int = 0
    kv_blocks_total: int = 0
    kv_blocks_used: int = 0

    @property
    def kv_utilization(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0


@dataclass(eq=False)
class _Request:
    """The caller's side of a request: the loop to deliver to and its queue of updates."""

    seq: Sequence
    loop: asyncio.AbstractEventLoop
    updates: asyncio.Queue[Update] = field(default_factory=asyncio.Queue)


class TokenStream:
    """The tokens of one request as they are generated; `completion` is set once it completed.

    Text pieces never split a UTF-8 character. Raises like `Engine.generate` when the request
    does not complete. Leaving it early aborts the request and frees its KV blocks.
    """

    def __init__(self, engine: Engine, request: _Request) -> None:
        self.request_id = request.seq.request_id
        self.completion: Completion | None = None
        self._engine = engine
        self._request = request
        self._decoder = engine.tokenizer.stream_decoder()
        self._tokens: list[int] = []
        self._times: list[float] = []
        self._ended = False

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._ended:
            raise StopAsyncIteration
        try:
            update = await self._request.updates.get()
        except BaseException:  # cancelled while waiting: the caller went away
            self._abort()
            raise
        ok = update.outcome is Outcome.OK
        if update.outcome is not None:
            self._ended = True
            if not ok:
                raise _error_for(update)
        assert update.token is not None  # in flight or completed: the step produced a token
        self._tokens.append(update.token)
        self._times.append(update.at)
        text = self._decoder.feed([update.token]) + (self._decoder.flush() if ok else "")
        if ok:
            self.completion = self._complete(update)
        return StreamChunk(update.token, text, update.at, update.seq.finish_reason if ok else None)

    async def aclose(self) -> None:
        """Abort the request if it is still in flight."""
        self._abort()

    async def __aenter__(self) -> TokenStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._abort()

    def __del__(self) -> None:
        if not self._ended:
            self._engine.abort(self.request_id)

    def _abort(self) -> None:
        if not self._ended:
            self._ended = True
            self._engine.abort(self.request_id)

    def _complete(self, update: Update) -> Completion:
        seq = update.seq
        return Completion(
            request_id=seq.request_id,
            text=self._engine.tokenizer.decode(self._tokens),
            token_ids=list(self._tokens),
            prompt_tokens=seq.num_prompt,
            finish_reason=seq.finish_reason or "length",
            arrival=seq.arrival,
            first_scheduled=seq.first_scheduled or seq.arrival,
            token_times=list(self._times),
            finished=update.at,
            preemptions=seq.preemptions,
        )


class Engine:
    """A paged-KV, continuously batching inference engine on its own thread."""

    def __init__(
        self, config: EngineConfig | None = None, *, metrics: HarnessMetrics | None = None
    ):
        self.config = config or EngineConfig()
        if metrics is None:
            metrics = HarnessMetrics() if self.config.record_metrics else NullMetrics()
        self.metrics = metrics
        self.tokenizer = ByteTokenizer()
        self.model_config: ModelConfig | None = None
        self.device: torch.device | None = None
        self.dtype: torch.dtype | None = None
        self.core: EngineCore | None = None
        self.stats = EngineStats()
        self._ids = itertools.count(1)
        self._wake = threading.Condition()
        self._inbox: deque[tuple[str, object]] = deque()
        self._requests: dict[int, _Request] = {}  # engine thread only
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.failure: str | None = None  # why the engine failed for good; None while it runs

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the engine thread: load the model, allocate the KV cache, warm up, serve."""
        if self._thread is not None:
            raise RuntimeError("the engine is already started")
        self._thread = threading.Thread(target=self._main, name="inference-engine", daemon=True)
        self._thread.start()

    @property
    def ready(self) -> bool:
        """True once the model is loaded and the warm-up generation is done."""
        return self._ready.is_set() and self.failure is None and not self._stopping

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, reasons it is not), in the shape of the exporter's /readyz checks."""
        if self.failure is not None:
            return False, [f"inference harness failed: {self.failure}"]
        if self._stopping:
            return False, ["inference harness is stopping"]
        if not self._ready.is_set():
            return False, ["inference harness is loading its model and warming up"]
        return True, []

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until ready; raise EngineError if startup failed, TimeoutError if too slow."""
        if self._thread is None:
            raise EngineError("the engine is not started")
        if not await asyncio.to_thread(self._ready.wait, timeout):
            raise TimeoutError(f"the engine was not ready within {timeout}s")
        if self.failure is not None:
            raise EngineFailed(f"engine failed: {self.failure}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the engine thread; requests still in flight end as cancelled."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    async def __aenter__(self) -> Engine:
        self.start()
        await self.wait_ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # --- requests ----------------------------------------------------------------------------

    async def generate(
        self,
        prompt: str | list[int],
        max_tokens: int = 16,
        *,
        temperature: float = 0.0,
        timeout: float | None = None,
        ignore_eos: bool = False,
    ) -> Completion:
        """Generate up to `max_tokens` tokens (greedy at temperature 0).

        Raises RequestRejected (it can never fit), RequestTimeout (`timeout` seconds passed),
        RequestCancelled (aborted) or EngineError (the model step failed, the engine stopped).
        """
        async with self.stream(
            prompt, max_tokens, temperature=temperature, timeout=timeout, ignore_eos=ignore_eos
        ) as stream:
            async for _ in stream:
                pass
        assert stream.completion is not None
        return stream.completion

    def stream(
        self,
        prompt: str | list[int],
        max_tokens: int = 16,
        *,
        temperature: float = 0.0,
        timeout: float | None = None,
        ignore_eos: bool = False,
    ) -> TokenStream:
        """Queue a request now (RequestRejected at once if it can never fit) and return the
        stream of its tokens. Iterate it with `async for`; closing it early (`aclose`, leaving
        `async with`) or cancelling the task iterating it aborts the request."""
        if self.failure is not None:
            raise EngineFailed(self.failure)
        if self._stopping or self._thread is None:
            raise EngineError("the engine is not running")
        if temperature < 0:
            raise ValueError("temperature must not be negative")
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        now = time.perf_counter()
        seq = Sequence(
            request_id=next(self._ids),
            token_ids=ids,
            num_prompt=len(ids),
            max_tokens=max_tokens,
            arrival=now,
            deadline=None if timeout is None else now + timeout,
            temperature=temperature,
            ignore_eos=ignore_eos,
        )
        core = self.core
        if core is not None:  # limits are known once the model is loaded: refuse at once
            problem = core.problem(seq)
            if problem:
                self.metrics.count_outcome(Outcome.REJECTED)
                raise RequestRejected(problem)
        request = _Request(seq, asyncio.get_running_loop())
        self._post("add", request)
        return TokenStream(self, request)

    def abort(self, request_id: int) -> None:
        """Abort a request from any thread; it ends as cancelled and its KV blocks are freed
        at the engine's next step (a no-op if it already ended)."""
        self._post("abort", request_id)

    def _post(self, kind: str, item: object) -> None:
        with self._wake:
            self._inbox.append((kind, item))
            self._wake.notify()

    # --- the engine thread -------------------------------------------------------------------

    def _main(self) -> None:
        try:
            with torch.inference_mode():
                self._build()
                self._warm_up()
        except BaseException as exc:
            self._fail(f"it did not start: {_one_line(exc)}", exc)
            self._ready.set()
            self._drain_after_failure(f"engine failed to start: {exc}")
            return
        self.metrics.set_ready(True)
        self._ready.set()
        log.info(
            "inference engine ready: %s on %s (%s), %d KV blocks of %d tokens",
            self.model_config.name if self.model_config else "?",
            self.device,
            str(self.dtype).removeprefix("torch."),
            self.stats.kv_blocks_total,
            self.config.block_size,
        )
        try:
            with torch.inference_mode():
                self._serve()
        except BaseException as exc:
            self._fail(f"its thread stopped: {_one_line(exc)}", exc)
            self._drain_after_failure(f"engine failed: {_one_line(exc)}")
            return
        finally:
            self.metrics.set_ready(False)
        self._drain_after_failure("the engine stopped")

    def _fail(self, reason: str, exc: BaseException) -> None:
        """Failed for good: one log line (the traceback at debug level), metrics, readiness."""
        self.failure = reason
        self.metrics.set_failed()
        log.error("the inference engine failed: %s; it serves nothing until restarted", reason)
        log.debug("inference engine failure", exc_info=exc)

    def _build(self) -> None:
        built = build_core(self.config, self.metrics)
        self.core = built.core
        self.model_config, self.device, self.dtype = built.model_config, built.device, built.dtype
        self.stats = EngineStats(kv_blocks_total=built.core.scheduler.allocator.num_total)
        dtype_name = str(built.dtype).removeprefix("torch.")
        self.metrics.set_model(ModelInfo(built.model_config.name, dtype_name, str(built.device)))
        self.core.record_idle()

    def _warm_up(self) -> None:
        """One short generation on the device, outside the metrics."""
        core = self.core
        assert core is not None
        if not self.config.warmup:
            return
        recorder, core.metrics = core.metrics, NullMetrics()
        try:
            ids = self.tokenizer.encode(WARMUP_PROMPT)
            seq = Sequence(0, ids, len(ids), WARMUP_TOKENS, time.perf_counter(), ignore_eos=True)
            core.add(seq)
            while core.has_work():
                core.step()
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        finally:
            core.metrics = recorder

    def _serve(self) -> None:
        core = self.core
        assert core is not None
        while True:
            with self._wake:
                while not self._inbox and not self._stopping and not core.has_work():
                    self._wake.wait()
                if self._stopping:
                    return
                inbox, self._inbox = self._inbox, deque()
            updates = self._apply(inbox)
            updates += core.expire()
            if core.has_work():
                updates += core.step()
            else:
                core.record_idle()
            self._publish_stats()
            self._deliver(updates)

    def _apply(self, inbox: deque[tuple[str, object]]) -> list[Update]:
        core = self.core
        assert core is not None
        updates: list[Update] = []
        for kind, item in inbox:
            if kind == "add":
                assert isinstance(item, _Request)
                try:
                    core.add(item.seq)
                except RequestRejected as exc:
                    at = time.perf_counter()
                    self._send(item, Update(item.seq, None, at, Outcome.REJECTED, str(exc)))
                    continue
                self._requests[item.seq.request_id] = item
            else:
                assert isinstance(item, int)
                update = core.abort(item)
                if update is not None:
                    updates.append(update)
        return updates

    def _publish_stats(self) -> None:
        core = self.core
        assert core is not None
        allocator = core.scheduler.allocator
        self.stats = EngineStats(
            running=len(core.scheduler.running),
            waiting=len(core.scheduler.waiting),
            kv_blocks_total=allocator.num_total,
            kv_blocks_used=allocator.num_used,
        )

    def _deliver(self, updates: list[Update]) -> None:
        """Hand each update to its request's loop: one callback per loop per step."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Update]]] = {}
        for update in updates:
            request = self._requests.get(update.seq.request_id)
            if request is None:
                continue
            if update.outcome is not None:
                del self._requests[update.seq.request_id]
            by_loop.setdefault(request.loop, []).append((request, update))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # the caller's loop is closed: nobody waits for these
                for request, update in items:
                    if update.outcome is None and self.core is not None:
                        self.core.abort(request.seq.request_id)

    def _send(self, request: _Request, update: Update) -> None:
        with contextlib.suppress(RuntimeError):
            request.loop.call_soon_threadsafe(_put_all, [(request, update)])

    def _drain_after_failure(self, reason: str) -> None:
        """End everything still queued or running (startup failed, or the engine stopped)."""
        with self._wake:
            inbox, self._inbox = self._inbox, deque()
        core = self.core
        updates: list[Update] = []
        if core is not None:
            for request_id in list(core.sequences):
                update = core.abort(request_id, Outcome.CANCELLED)
                if update is not None:
                    updates.append(update)
            core.record_idle()
            self._publish_stats()
        at = time.perf_counter()
        for kind, item in inbox:
            if kind == "add":
                assert isinstance(item, _Request)
                self._send(item, Update(item.seq, None, at, Outcome.CANCELLED, reason))
        for update in updates:
            request = self._requests.pop(update.seq.request_id, None)
            if request is not None:
                self._send(request, Update(update.seq, None, at, Outcome.CANCELLED, reason))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _put_all(items: list[tuple[_Request, Update]]) -> None:
    for request, update in items:
        request.updates.put_nowait(update)


def _error_for(update: Update) -> Exception:
    seq = update.seq
    if update.outcome is Outcome.TIMEOUT:
        waited = update.at - seq.arrival
        return RequestTimeout(
            f"request {seq.request_id} timed out after {waited:.3f}s "
            f"({seq.num_output} of {seq.max_tokens} tokens generated)"
        )
    if update.outcome is Outcome.CANCELLED:
        return RequestCancelled(update.error or f"request {seq.request_id} was aborted")
    if update.outcome is Outcome.REJECTED:
        return RequestRejected(update.error)
    return EngineError(update.error or f"request {seq.request_id} failed")
