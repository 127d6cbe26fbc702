"""The allocator of the serving processes beside the exporter, from their probes' files.

Each process that runs the probe (`exporter/probe`: a vLLM plugin, or one call) writes its
`torch.cuda.memory_stats` per device into a file of its own in a shared directory (an emptyDir
in the pod; `--torch.probe-dir`). Every collection reads each file and exports the
torch_cuda_* families labelled with the process (pid, process name) and the GPU (NVML's index
and UUID, see `GpuLookup`).

- A process that exited has its file ignored and removed: at once when its pid is gone (or is
  a zombie, or another process's) in the exporter's own pid namespace; after `STALE_INTERVALS`
  of its intervals without a write when the exporter cannot see its pids (a sidecar container
  without `shareProcessNamespace`).
- A torn or corrupt file skips that process, with one warning per file until it changes; the
  other processes are exported as usual.
- A file the probe did not write is refused and left alone: a symbolic link or anything but a
  regular file, another hard link to it, an owner that is neither this exporter's user, root
  nor one named by `--torch.probe-uid`, a group- or world-writable mode, more than
  `MAX_FILE_BYTES`. Opened with O_NOFOLLOW and checked on the open descriptor, so what is
  checked is what is read.

`exporter_torch_probe_files{state}` counts the files by what became of them this collection.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from exporter import catalog
from exporter.probe import procfs
from exporter.probe.record import (
    MAX_FILE_BYTES,
    SUFFIX,
    TEMP_PREFIX,
    CorruptRecord,
    ProbeRecord,
    decode,
)
from exporter.probe.stats import DeviceReading
from exporter.samples import Sample
from exporter.sources import SourceUnavailable
from exporter.sources.torch import GpuLookup, allocator_samples

log = logging.getLogger(__name__)

#: A process whose file is older than this many of its own intervals has stopped writing.
STALE_INTERVALS = 3
#: Slack on top, for a write that a busy process made late.
STALE_SLACK = 2.0
#: A temporary file older than this is left by a write that died (a write takes milliseconds).
TEMP_MAX_AGE = 60.0
STATES = ("live", "stale", "refused", "corrupt")
#: Files read per collection at most (in name order; the rest are refused): a writer gone
#: wrong cannot make a collection unbounded.
MAX_FILES = 1024


class Refused(Exception):
    """A file this exporter does not trust (the message says why)."""


@dataclass(frozen=True)
class _Read:
    key: tuple[int, int, int]  # inode, mtime, size: unchanged means the same record
    record: ProbeRecord


class ProbeDirectorySource:
    """torch_cuda_* of every live process writing into `directory`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        trusted_uids: Iterable[int] = (),
        gpus: GpuLookup | None = None,
        clock: Callable[[], float] = time.time,
        name: str = "torch-probe",
    ) -> None:
        self.name = name
        self.directory = Path(directory)
        self.trusted_uids = frozenset({os.geteuid(), 0, *trusted_uids})
        self._gpus = gpus or GpuLookup()
        self._clock = clock
        self._pid_namespace = procfs.pid_namespace()
        self._reads: dict[str, _Read] = {}  # file name → its last good record
        self._said: dict[str, str] = {}  # file name → the problem last logged about it

    def collect(self) -> list[Sample]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            raise SourceUnavailable(
                f"--torch.probe-dir {self.directory} does not exist (the directory the serving "
                "processes' probes write to, e.g. an emptyDir mounted in both containers)"
            ) from None
        except OSError as exc:
            raise SourceUnavailable(f"--torch.probe-dir {self.directory}: {exc.strerror}") from None
        now = self._clock()
        states: Counter[str] = Counter()
        live: list[ProbeRecord] = []
        names = set()
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                self._sweep_temporary(entry, now)
            elif entry.name.endswith(SUFFIX):
                names.add(entry.name)
        if len(names) > MAX_FILES:
            states["refused"] += len(names) - MAX_FILES
            self._say(
                "",
                logging.WARNING,
                f"more than {MAX_FILES} files in {self.directory}: reading the first by name",
            )
            names = set(sorted(names)[:MAX_FILES])
        else:
            self._said.pop("", None)
        for name in names:
            state, record = self._take(name, now)
            if state:
                states[state] += 1
            if record is not None:
                live.append(record)
        for gone in (self._reads.keys() | self._said.keys()) - names - {""}:
            self._reads.pop(gone, None)
            self._said.pop(gone, None)
        out = self._samples(live)
        out += [catalog.EXPORTER_TORCH_PROBE_FILES.sample(states[s], state=s) for s in STATES]
        return out

    def close(self) -> None:
        """Nothing to release (the files belong to the probes)."""

    # --- one file ----------------------------------------------------------------------------

    def _take(self, name: str, now: float) -> tuple[str, ProbeRecord | None]:
        """(state, the record when live); state "" when the file went while being read."""
        path = self.directory / name
        try:
            record = self._read(name, path)
        except FileNotFoundError:
            return "", None
        except Refused as exc:
            self._say(name, logging.WARNING, f"refused {path}: {exc}; its process is not exported")
            return "refused", None
        except CorruptRecord as exc:
            self._say(name, logging.WARNING, f"skipped {path}: {exc}; read again when it changes")
            return "corrupt", None
        ended = self._ended(record, now)
        if ended:
            return self._remove(name, path, record, ended), None
        if record.timestamp > now + record.interval + STALE_SLACK:
            self._say(name, logging.WARNING, f"skipped {path}: its timestamp is in the future")
            return "corrupt", None
        if name in self._said:
            log.info("reading %s again (%s, pid %d)", path, record.process, record.pid)
            del self._said[name]
        return "live", record

    def _read(self, name: str, path: Path) -> ProbeRecord:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused("it is a symbolic link") from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise Refused(
                    f"this exporter (uid {os.geteuid()}) may not read it: the probe writes "
                    "its files readable by all, so something else made it"
                ) from None
            raise Refused(exc.strerror or str(exc)) from None
        try:
            st = os.fstat(fd)
            self._check(st)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            known = self._reads.get(name)
            if known is not None and known.key == key:
                return known.record
            data = _read_at_most(fd, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise Refused(f"larger than {MAX_FILE_BYTES} bytes")
        record = decode(data)  # CorruptRecord
        self._reads[name] = _Read(key, record)
        return record

    def _check(self, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise Refused("not a regular file")
        if st.st_uid not in self.trusted_uids:
            trusted = ", ".join(map(str, sorted(self.trusted_uids)))
            raise Refused(
                f"owned by uid {st.st_uid}, not a trusted writer (uids {trusted}; "
                "--torch.probe-uid trusts another)"
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise Refused(f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})")
        if st.st_nlink > 1:
            raise Refused("it has other hard links")
        if st.st_size > MAX_FILE_BYTES:
            raise Refused(f"larger than {MAX_FILE_BYTES} bytes")

    def _ended(self, record: ProbeRecord, now: float) -> str:
        """Why the process no longer counts ("" while it does)."""
        visible = self._pid_namespace is not None and record.pid_namespace == self._pid_namespace
        if visible and not procfs.alive(record.pid, record.start_time):
            return "exited"
        limit = STALE_INTERVALS * record.interval + STALE_SLACK
        if now - record.timestamp > limit:
            return f"wrote nothing for {now - record.timestamp:.0f}s (limit {limit:g}s)"
        return ""

    def _remove(self, name: str, path: Path, record: ProbeRecord, why: str) -> str:
        who = f"{record.process} (pid {record.pid})"
        try:
            path.unlink()
            _unlink_quietly(self.directory / f"{TEMP_PREFIX}{name}.tmp")
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._say(name, logging.WARNING, f"{who} {why}; cannot remove {path}: {exc.strerror}")
            return "stale"
        log.info("%s %s: its torch_cuda_* series are gone, %s removed", who, why, path)
        self._reads.pop(name, None)
        self._said.pop(name, None)
        return ""

    def _sweep_temporary(self, entry: os.DirEntry[str], now: float) -> None:
        """Remove a probe's temporary file left by a write that died half way."""
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            return
        if (
            stat.S_ISREG(st.st_mode)
            and st.st_uid in self.trusted_uids
            and now - st.st_mtime > TEMP_MAX_AGE
            and entry.name.endswith(f"{SUFFIX}.tmp")
        ):
            _unlink_quietly(Path(entry.path))

    def _say(self, name: str, level: int, message: str) -> None:
        if self._said.get(name) != message:
            log.log(level, message)
            self._said[name] = message

    # --- samples -----------------------------------------------------------------------------

    def _samples(self, records: list[ProbeRecord]) -> list[Sample]:
        """The series of every live record; of two records with one label set (two containers'
        processes with the same pid and name on one GPU), the newer."""
        chosen: dict[tuple[str, ...], tuple[ProbeRecord, DeviceReading]] = {}
        for record in sorted(records, key=lambda r: r.timestamp):
            for device in record.devices:
                gpu, uuid = self._gpus.find(device)
                chosen[(gpu, uuid, str(record.pid), record.process)] = (record, device)
        out: list[Sample] = []
        for (gpu, uuid, pid, process), (record, device) in sorted(chosen.items()):
            out += allocator_samples(
                device.stats,
                gpu=gpu,
                uuid=uuid,
                pid=pid,
                process=process,
                expandable_segments=record.expandable_segments,
            )
        return out


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        log.debug("cannot remove %s: %s", path, exc)
