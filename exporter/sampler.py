"""The sampler: one background task that asks every source each interval and publishes a snapshot.

Each source runs in its own daemon thread with a timeout, so a source that hangs (a wedged
driver call) costs only its own series: the others still publish, the hung one is reported by
`exporter_source_up 0` and `exporter_collect_errors_total{reason="timeout"}`, and no second call
is stacked on top of a call that has not returned. Scrapes read `sampler.snapshot` and never
reach a source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from exporter import __version__, catalog
from exporter.catalog import FAMILIES, Kind
from exporter.exposition import Snapshot, SourceState, Variant, make_snapshot
from exporter.samples import AnySample, HistogramSample, Labels
from exporter.sources import Source, SourceUnavailable

log = logging.getLogger(__name__)

#: Values of the `reason` label of exporter_collect_errors_total, all exported from the start.
ERROR_REASONS = ("error", "timeout", "invalid", "unavailable")

#: A source whose last success is older than this many intervals makes /readyz fail.
STALE_AFTER_INTERVALS = 3

#: A variant (format, gzip) nobody has asked for in this long is no longer pre-rendered.
WANTED_FOR_SECONDS = 600.0


class InvalidSamples(Exception):
    """A source returned samples the catalog does not allow (unknown family, duplicate series)."""


@dataclass
class _SourceSlot:
    """The sampler's bookkeeping for one source."""

    source: Source
    inflight: asyncio.Future[list[AnySample]] | None = None
    inflight_since: float = 0.0
    up: bool = False
    last_success: float | None = None
    last_duration: float = 0.0
    last_error: str = ""
    last_reason: str = ""
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_REASONS, 0))
    samples: list[AnySample] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name


class Sampler:
    """Collects from every source once per `interval` and keeps the latest snapshot."""

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        interval: float = 1.0,
        timeout: float | None = None,
        const_labels: Labels = (),
        static_samples: Sequence[AnySample] = (),
        gpu_backend: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.timeout = timeout if timeout is not None else interval
        self.const_labels = const_labels
        self.static_samples = tuple(static_samples)  # e.g. exporter_pod_info
        if gpu_backend is not None and gpu_backend not in names:
            raise ValueError(f"gpu_backend {gpu_backend!r} is not one of the sources {names}")
        self.gpu_backend = gpu_backend
        self._clock = clock
        self._wall_clock = wall_clock
        self._slots = [_SourceSlot(s) for s in sources]
        self.snapshot: Snapshot | None = None
        self.cycles = 0
        self._wanted: dict[Variant, float] = {}  # variant -> when a scrape last asked for it

    @property
    def source_names(self) -> list[str]:
        return [slot.name for slot in self._slots]

    async def run(self) -> None:
        """Collect forever, one cycle per interval (a late cycle skips, never bunches up)."""
        next_start = self._clock()
        while True:
            await self.cycle()
            next_start += self.interval
            now = self._clock()
            if next_start < now:
                next_start = now
            await asyncio.sleep(next_start - now)

    async def cycle(self) -> Snapshot:
        """One collection: ask every source concurrently, then render and publish a snapshot."""
        started_wall = self._wall_clock()
        started = self._clock()
        await asyncio.gather(*(self._collect(slot) for slot in self._slots))
        samples: list[AnySample] = []
        for slot in self._slots:
            if slot.up:
                samples.extend(slot.samples)
        samples.extend(self._own_samples(started_wall))
        states = {
            slot.name: SourceState(
                slot.name, slot.up, slot.last_success, slot.last_duration, slot.last_error
            )
            for slot in self._slots
        }
        snapshot = await asyncio.to_thread(
            make_snapshot,
            samples,
            const_labels=self.const_labels,
            sources=states,
            collected_at=started_wall,
            collected_monotonic=started,
            prerender=self.wanted_variants(),
        )
        self.snapshot = snapshot
        self.cycles += 1
        return snapshot

    def note_request(self, variant: Variant) -> None:
        """A scrape asked for `variant`: pre-render it in the coming cycles."""
        self._wanted[variant] = self._clock()

    def wanted_variants(self) -> list[Variant]:
        """The variants scrapers asked for recently (rendered before each publish)."""
        cutoff = self._clock() - WANTED_FOR_SECONDS
        return [v for v, at in self._wanted.items() if at >= cutoff]

    async def _collect(self, slot: _SourceSlot) -> None:
        started = self._clock()
        if slot.inflight is not None and not slot.inflight.done():
            # The previous call has not returned: do not stack another thread on it.
            self._fail(slot, "timeout", f"still hung after {started - slot.inflight_since:.1f}s")
            slot.last_duration = self.timeout
            return
        slot.inflight = _call_in_daemon_thread(slot.source.collect, f"collect-{slot.name}")
        slot.inflight_since = started
        try:
            samples = await asyncio.wait_for(asyncio.shield(slot.inflight), self.timeout)
            _validate(samples)
        except TimeoutError:
            self._fail(slot, "timeout", f"no answer within {self.timeout:g}s")
            slot.last_duration = self.timeout
            return
        except SourceUnavailable as exc:
            self._fail(slot, "unavailable", str(exc))
        except InvalidSamples as exc:
            self._fail(slot, "invalid", str(exc))
        except Exception as exc:  # a source bug must not stop the exporter
            self._fail(slot, "error", f"{type(exc).__name__}: {exc}")
        else:
            if not slot.up:
                log.info("source %s is up (%d series)", slot.name, len(samples))
            slot.up = True
            slot.samples = samples
            slot.last_success = started
            slot.last_error = slot.last_reason = ""
        slot.last_duration = self._clock() - started

    def _fail(self, slot: _SourceSlot, reason: str, message: str) -> None:
        slot.errors[reason] += 1
        if slot.up or slot.last_reason != reason:  # log transitions, not every cycle
            log.warning("source %s failed (%s): %s", slot.name, reason, message)
        slot.up = False
        slot.samples = []
        slot.last_error = message
        slot.last_reason = reason

    def _own_samples(self, collected_at: float) -> list[AnySample]:
        own: list[AnySample] = [
            catalog.EXPORTER_BUILD_INFO.sample(
                1, version=__version__, python_version=platform.python_version()
            ),
            catalog.EXPORTER_LAST_COLLECT_TIMESTAMP.sample(collected_at),
            *self.static_samples,
        ]
        backend_up = any(s.up for s in self._slots if s.name == self.gpu_backend)
        own.append(
            catalog.GPU_BACKEND_UP.sample(int(backend_up), backend=self.gpu_backend or "none")
        )
        for slot in self._slots:
            own.append(catalog.EXPORTER_SOURCE_UP.sample(int(slot.up), source=slot.name))
            own.append(
                catalog.EXPORTER_COLLECT_DURATION.sample(slot.last_duration, source=slot.name)
            )
            for reason, count in slot.errors.items():
                own.append(
                    catalog.EXPORTER_COLLECT_ERRORS.sample(count, source=slot.name, reason=reason)
                )
        return own

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, reasons it is not): a snapshot exists and no source is stale."""
        if self.snapshot is None:
            return False, ["no snapshot collected yet"]
        now = self._clock()
        limit = STALE_AFTER_INTERVALS * self.interval
        problems = []
        for slot in self._slots:
            if slot.last_success is None:
                problems.append(f"source {slot.name} has never answered ({slot.last_error})")
            elif now - slot.last_success > limit:
                problems.append(
                    f"source {slot.name} is stale: last answer {now - slot.last_success:.1f}s ago"
                    f" ({slot.last_error})"
                )
        return not problems, problems

    def close(self) -> None:
        """Close every source; a source that raises while closing is logged and skipped."""
        for slot in self._slots:
            try:
                slot.source.close()
            except Exception:
                log.exception("closing source %s failed", slot.name)


def _validate(samples: Iterable[AnySample]) -> None:
    seen: set[tuple[str, Labels]] = set()
    for s in samples:
        fam = FAMILIES.get(s.name)
        if fam is None:
            raise InvalidSamples(f"{s.name} is not in the metric catalog")
        if (fam.kind is Kind.HISTOGRAM) != isinstance(s, HistogramSample):
            raise InvalidSamples(f"{s.name}: sample type does not match a {fam.kind}")
        if tuple(k for k, _ in s.labels) != fam.labels:
            raise InvalidSamples(f"{s.name}: labels {s.labels} do not match {fam.labels}")
        key = (s.name, s.labels)
        if key in seen:
            raise InvalidSamples(f"duplicate series {s.name}{dict(s.labels)}")
        seen.add(key)


def _call_in_daemon_thread(
    fn: Callable[[], Iterable[AnySample]], name: str
) -> asyncio.Future[list[AnySample]]:
    """Run fn in a daemon thread (a hung call never blocks process exit) and return a future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[AnySample]] = loop.create_future()

    def settle(result: list[AnySample] | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])

    def runner() -> None:
        try:
            result, error = list(fn()), None
        except BaseException as exc:
            result, error = None, exc
        # RuntimeError: the loop closed while this call hung, so nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    # A late failure of a call already given up on must not warn "exception never retrieved".
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    threading.Thread(target=runner, name=name, daemon=True).start()
    return future
