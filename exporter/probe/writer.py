"""The probe's thread: every interval, this process's allocator figures into its own file.

A daemon thread that never raises into the serving process: a failed write (a full or missing
directory, a reader error) is logged once per distinct problem and tried again at the next
interval. Nothing is written until the process has a CUDA context. The file is replaced
atomically (a temporary file beside it, then os.replace), so a reader sees the previous
record or the new one, never a torn one; the probe removes it when the process exits
normally, and the exporter removes the files of processes that did not.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from exporter.probe import procfs
from exporter.probe.record import FILE_MODE, TEMP_PREFIX, ProbeRecord, encode, file_name
from exporter.probe.stats import StatsReader, TorchCudaStats, expandable_segments_enabled

log = logging.getLogger("gpu_inference_exporter.probe")

DEFAULT_INTERVAL = 5.0
MIN_INTERVAL = 0.05
MAX_INTERVAL = 3600.0


class Probe:
    """Writes `<directory>/<pid>-<pid namespace>.json` every `interval` seconds once started."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        interval: float = DEFAULT_INTERVAL,
        *,
        reader: StatsReader | None = None,
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            raise ValueError(
                f"probe interval {interval:g}s: use {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds"
            )
        self.directory = Path(directory)
        self.interval = float(interval)
        self.reader: StatsReader = reader if reader is not None else TorchCudaStats(environ)
        self._expandable = expandable_segments_enabled(environ)
        self._clock = clock
        self.pid = os.getpid()
        self._pid_namespace = procfs.pid_namespace()
        self._start_time = procfs.start_time()
        self.path = self.directory / file_name(self.pid, self._pid_namespace)
        self._temp = self.directory / f"{TEMP_PREFIX}{self.path.name}.tmp"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._problem = ""  # the last problem logged, so each is said once

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Probe:
        if self._thread is None:
            with contextlib.suppress(OSError):  # an emptyDir is there already; else try
                self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._run, name="gie-torch-probe", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop writing and remove this process's file (its series go at the next collection)."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for path in (self.path, self._temp):
            with contextlib.suppress(OSError):
                path.unlink()

    def write_once(self) -> bool:
        """Write the current figures if the process has a CUDA context; True when written.
        Never raises: a problem is logged (once until it changes) and False returned."""
        try:
            if not self.reader.initialized():
                return False
            record = ProbeRecord(
                pid=self.pid,
                pid_namespace=self._pid_namespace,
                start_time=self._start_time,
                process=procfs.process_name(),
                timestamp=self._clock(),
                interval=self.interval,
                expandable_segments=self._expandable,
                devices=tuple(self.reader.devices()),
            )
            self._replace(encode(record))
        except Exception as exc:  # the serving process must never feel the probe
            self._say(f"cannot write {self.path}: {type(exc).__name__}: {exc}")
            return False
        if self._problem:
            log.info("writing %s again", self.path)
            self._problem = ""
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.write_once()
            self._stopping.wait(self.interval)

    def _replace(self, data: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)  # left by a write that died half way
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self._temp, flags, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask says
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.replace(self._temp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            raise

    def _say(self, problem: str) -> None:
        if problem != self._problem:
            log.warning("allocator probe: %s (trying again every %gs)", problem, self.interval)
            self._problem = problem


_lock = threading.Lock()
_current: Probe | None = None
_hooks_installed = False


def start(
    directory: str | os.PathLike[str],
    interval: float = DEFAULT_INTERVAL,
    *,
    reader: StatsReader | None = None,
) -> Probe:
    """Start this process's probe (once: a second call returns the running one). A child
    forked afterwards starts its own, since its parent's thread does not survive the fork."""
    global _current, _hooks_installed
    with _lock:
        if _current is not None and _current.running:
            if Path(directory) != _current.directory:
                log.warning(
                    "allocator probe already writes to %s; not starting another for %s",
                    _current.directory,
                    directory,
                )
            return _current
        _current = Probe(directory, interval, reader=reader).start()
        if not _hooks_installed:
            atexit.register(stop)
            os.register_at_fork(after_in_child=_restart_in_child)
            _hooks_installed = True
        log.info("allocator probe writing to %s every %gs", _current.path, interval)
        return _current


def stop() -> None:
    """Stop this process's probe, if one runs, and remove its file."""
    global _current
    with _lock:
        probe, _current = _current, None
    if probe is not None:
        probe.stop()


def _restart_in_child() -> None:
    global _lock, _current
    _lock = threading.Lock()  # another thread may have held it at the fork
    parent, _current = _current, None
    if parent is not None and not parent._stopping.is_set():
        with contextlib.suppress(Exception):
            start(parent.directory, parent.interval, reader=parent.reader)
