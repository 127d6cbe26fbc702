"""The DCGM source: every GPU a DCGM hostengine (or embedded DCGM) sees, read each cycle.

Lifecycle:
- The bindings are imported and DCGM connected on the first collection, not at construction.
  When that fails (no bindings, no libdcgm, no hostengine answering) collect() raises
  SourceUnavailable with one line saying why: the exporter keeps serving, with
  `exporter_source_up{source="dcgm"} 0`, and tries again with backoff (1 s doubling to 60 s);
  cycles in between fail fast without touching DCGM.
- Three field groups are watched on all GPUs at the collection interval (the hostengine
  samples; each cycle reads the latest values): the core fields; the profiling fields on their
  own (profiling.py), so a profiling module that refuses costs only the profiling families; and
  the fields newer than some hostengines in service (the recovery action, DCGM 4.5), so an older
  hostengine that refuses them costs only their families.
- A lost connection (the hostengine stopped or restarted) makes the source down in the same
  way, and it reconnects with backoff, making its field groups and watches again. GPUs are
  matched by UUID across reconnects; Xid counts and byte totals carry on.
- A GPU DCGM reports lost exports gpu_up 0 while the others carry on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from exporter.samples import Sample
from exporter.sources import SourceUnavailable
from exporter.sources.dcgm import bindings as dcgm_bindings
from exporter.sources.dcgm import fields as F
from exporter.sources.dcgm.bindings import Bindings, BindingsNotFound
from exporter.sources.dcgm.connection import Connection, GpuIdentity
from exporter.sources.dcgm.errors import ErrorClass, classify, connect_failure_reason, describe
from exporter.sources.dcgm.gpu import Gpu
from exporter.sources.dcgm.profiling import Profiling
from exporter.sources.dcgm.values import latest, number
from exporter.sources.nvml.errors import Backoff
from exporter.sources.xid import XidCounters

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "localhost:5555"


class DcgmSource:
    """GPU health and profiling metrics from DCGM through pydcgm."""

    name = "dcgm"

    def __init__(
        self,
        *,
        address: str = DEFAULT_ADDRESS,
        embedded: bool = False,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        profiling_retry_initial: float = 30.0,
        profiling_retry_max: float = 600.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.address = None if embedded else address
        self.interval = interval
        self._clock = clock
        self._environ = environ
        self._retry = Backoff(retry_initial, retry_max, clock=clock)
        self._profiling_retry = (profiling_retry_initial, profiling_retry_max)
        self._lock = threading.Lock()
        self._bindings: Bindings | None = None
        self._resolved: F.Resolved | None = None
        self._conn: Connection | None = None
        self._profiling: Profiling | None = None
        self._basic_fg: Any = None
        self._recent_fg: Any = None
        self._reason = "DCGM not connected yet"
        self._gpus: list[Gpu] = []
        self._xids = XidCounters()
        self._warned: set[str] = set()
        self.connects = 0

    @property
    def where(self) -> str:
        return "embedded DCGM" if self.address is None else f"hostengine {self.address}"

    # --- what tests and scripts/gpu-check look at -------------------------------------------

    @property
    def gpus(self) -> list[Gpu]:
        return list(self._gpus)

    @property
    def profiling_reason(self) -> str:
        """Why the profiling fields are not watched ("" while they are)."""
        return self._profiling.reason if self._profiling else "not connected"

    # --- the Source protocol -----------------------------------------------------------------

    def collect(self) -> list[Sample]:
        with self._lock:
            if self._conn is None:
                self._start()
            conn = self._conn
            assert conn is not None and self._profiling is not None
            try:
                if self._profiling.due():
                    self._profiling.start(conn, self.interval)
                basic = conn.latest(self._basic_fg)
                if self._recent_fg is not None:
                    basic = _merged(basic, conn.latest(self._recent_fg))
                profiling = self._profiling.read(conn)
                links = self._links(conn)
                return self._samples(conn, basic, profiling, links)
            except Exception as exc:
                if classify(exc) is ErrorClass.CONNECTION:
                    self._fail(f"lost the connection to {self.where}: {describe(exc)}")
                    raise SourceUnavailable(self._reason) from None
                raise

    def close(self) -> None:
        """Drop the field groups and disconnect (skipped if a collection is hung in DCGM)."""
        if not self._lock.acquire(timeout=2.0):
            log.warning("a DCGM call is still hung at shutdown: not disconnecting")
            return
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        finally:
            self._lock.release()

    # --- connecting ---------------------------------------------------------------------------

    def _start(self) -> None:
        """Connect and watch, or raise SourceUnavailable (and back off)."""
        if not self._retry.ready():
            raise SourceUnavailable(self._reason)
        try:
            b = self._bindings or dcgm_bindings.load(
                dict(self._environ) if self._environ is not None else None
            )
        except (BindingsNotFound, ImportError) as exc:
            self._fail(f"{exc}; retrying with backoff")
            raise SourceUnavailable(self._reason) from None
        self._bindings = b
        if self._resolved is None:
            self._resolved = self._resolve(b)
        conn = Connection(b, self.address)
        try:
            conn.open()
        except Exception as exc:
            conn.close()
            if not _is_dcgm_error(b, exc):
                raise  # a bug, not an answer from DCGM
            where = self.address or "embedded DCGM"
            self._fail(connect_failure_reason(exc, where) + "; retrying with backoff")
            raise SourceUnavailable(self._reason) from None
        try:
            self._setup(conn)
        except Exception as exc:
            conn.close()
            if isinstance(exc, SourceUnavailable):
                self._fail(str(exc))
            elif _is_dcgm_error(b, exc):
                self._fail(f"{self.where} answered, but setting up failed: {describe(exc)}")
            else:
                raise
            raise SourceUnavailable(self._reason) from None
        self._conn = conn
        self._retry.reset()
        self.connects += 1

    def _resolve(self, b: Bindings) -> F.Resolved:
        resolved = F.resolve(b.dcgm_fields, (*F.BASIC, *F.RECENT, *F.PROFILING))
        if resolved.deprecated:
            log.debug("deprecated DCGM field names used: %s", ", ".join(resolved.deprecated))
        recent = {f.key for f in F.RECENT}
        for key, why in resolved.skipped.items():
            level = logging.INFO if key in recent else logging.WARNING  # older DCGM: expected
            log.log(level, "DCGM field %s is not watched: %s", key, why)
        return resolved

    def _setup(self, conn: Connection) -> None:
        """Find the GPUs, watch the field groups and read once (the NVML index, the Xid
        starting point)."""
        resolved = self._resolved
        assert resolved is not None
        ids = conn.gpu_ids()
        if not ids and not self._gpus:
            raise SourceUnavailable(f"{self.where} sees no supported GPU; retrying with backoff")
        self._basic_fg = conn.watch("basic", resolved.ids(F.BASIC), self.interval)
        self._recent_fg = self._watch_recent(conn, resolved.ids(F.RECENT))
        if self._profiling is None:
            self._profiling = Profiling(
                resolved.ids(F.PROFILING), Backoff(*self._profiling_retry, clock=self._clock)
            )
        self._profiling.start(conn, self.interval)
        conn.update_all()
        first = conn.latest(self._basic_fg)
        self._attach(conn, ids, first)

    def _watch_recent(self, conn: Connection, ids: list[int]) -> Any:
        """The RECENT field group, or None when these bindings or the hostengine lack them."""
        if not ids:
            return None
        try:
            return conn.watch("recent", ids, self.interval)
        except Exception as exc:
            if classify(exc) is ErrorClass.CONNECTION or self._bindings is None:
                raise
            if not _is_dcgm_error(self._bindings, exc):
                raise
            names = ", ".join(f.key for f in F.RECENT)
            self._warn_once(
                "recent",
                f"{self.where} refused the fields newer than it ({names}): {describe(exc)}; "
                "their families are absent, every other series carries on",
            )
            return None

    def _attach(self, conn: Connection, ids: list[int], first: Mapping[int, Any]) -> None:
        """Identify the GPUs: on the first connection, make them; later, match them by UUID."""
        idents = []
        for dcgm_id in ids:
            try:
                idents.append(conn.identity(dcgm_id))
            except Exception as exc:
                if classify(exc) is not ErrorClass.GPU:
                    raise
                log.warning("DCGM GPU %d does not answer: %s", dcgm_id, describe(exc))
        if not self._gpus:
            self._make_gpus(idents, first)
            return
        by_uuid = {ident.uuid: ident for ident in idents}
        for gpu in self._gpus:
            ident = by_uuid.get(gpu.ident.uuid)
            if ident is None:
                gpu.lose(f"not among the GPUs {self.where} reports")
            else:
                gpu.reconnected(ident.dcgm_id)
        log.info("reconnected to %s (%d GPU(s))", self.where, len(idents))

    def _make_gpus(self, idents: list[GpuIdentity], first: Mapping[int, Any]) -> None:
        """The GPUs of the first connection, labelled by their NVML index where DCGM has it."""
        numbers = self._resolved.numbers if self._resolved else {}
        index_field = numbers.get(F.NVML_INDEX.key)
        taken: set[int] = set()
        for ident in idents:
            idx = None
            if index_field is not None:
                idx = number(latest(first.get(ident.dcgm_id, {}).get(index_field)))
            index = int(idx) if idx is not None and int(idx) not in taken else ident.dcgm_id
            taken.add(index)
            self._gpus.append(Gpu(ident, index, numbers=numbers, xids=self._xids))
        self._gpus.sort(key=lambda g: g.index)
        log.info(
            "DCGM (%s): driver %s, %d GPU(s): %s",
            self.where,
            idents[0].driver_version if idents else "?",
            len(self._gpus),
            "; ".join(f"{g.index}: {g.ident.name} {g.ident.uuid}" for g in self._gpus),
        )

    def _fail(self, reason: str) -> None:
        """DCGM is unusable: disconnect, remember why, back off before the next try."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._profiling is not None:
            self._profiling.forget()
        self._reason = reason
        self._retry.failed()

    # --- one cycle ---------------------------------------------------------------------------

    def _links(self, conn: Connection) -> dict[int, list[int]] | None:
        try:
            return conn.nvlink_states()
        except Exception as exc:
            if classify(exc) is ErrorClass.CONNECTION:
                raise
            if self._bindings is None or not _is_dcgm_error(self._bindings, exc):
                raise
            self._warn_once("nvlink", f"NVLink link states unavailable from DCGM: {describe(exc)}")
            return None

    def _samples(
        self,
        conn: Connection,
        basic: Mapping[int, Any],
        profiling: Mapping[int, Any] | None,
        links: Mapping[int, list[int]] | None,
    ) -> list[Sample]:
        out: list[Sample] = []
        for gpu in self._gpus:
            values = basic.get(gpu.dcgm_id, {})
            gpu.observe_xid(values)
            gone = None
            if not gpu.has_values(values):
                gone = self._gone(conn, gpu) or gpu.lost_reason
            if gone:
                gpu.lose(gone)
                out += gpu.down()
            else:
                gpu.found()
                prof = None if profiling is None else profiling.get(gpu.dcgm_id, {})
                gpu_links = None if links is None else links.get(gpu.dcgm_id)
                out += gpu.samples(values, prof, gpu_links)
            out += self._xids.samples(gpu.index)
        return out

    def _gone(self, conn: Connection, gpu: Gpu) -> str | None:
        """Why DCGM says a GPU with no values does not answer (None: it says it is fine)."""
        try:
            return conn.gone(gpu.dcgm_id)
        except Exception as exc:
            if classify(exc) is ErrorClass.CONNECTION or self._bindings is None:
                raise
            if not _is_dcgm_error(self._bindings, exc):
                raise
            return describe(exc) if classify(exc) is ErrorClass.GPU else None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


def _merged(basic: Mapping[int, Any], recent: Mapping[int, Any]) -> dict[int, dict[int, Any]]:
    """Each GPU's values of both field groups, by DCGM GPU id then field number."""
    return {gpu: {**values, **recent.get(gpu, {})} for gpu, values in basic.items()}


def _is_dcgm_error(b: Bindings, exc: BaseException) -> bool:
    """True for an error pydcgm raised for an answer of DCGM (not a bug of ours)."""
    kinds = tuple(
        k
        for k in (
            getattr(b.dcgm_structs, "DCGMError", None),
            getattr(b.pydcgm, "DcgmException", None),
        )
        if isinstance(k, type)
    )
    return bool(kinds) and isinstance(exc, kinds)
