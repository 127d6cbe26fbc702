"""Who a process is, from /proc: its pid namespace, its start time and its short name.

The probe writes these about itself and the exporter reads them about a pid: a pid is only
comparable inside one pid namespace (a sidecar container has its own unless the pod shares
one), and a pid can be reused, which the start time tells apart. Linux only; elsewhere every
answer is None and liveness falls back to the probe's timestamp.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROC = Path("/proc")
MAX_NAME = 64


def pid_namespace(pid: int | str = "self") -> int | None:
    """The inode of the process's pid namespace (None without /proc or permission)."""
    try:
        return os.stat(PROC / str(pid) / "ns" / "pid").st_ino
    except OSError:
        return None


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat from its third field (state) on; None when the process is not there."""
    try:
        text = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return text.rpartition(b")")[2].split()  # the name may hold spaces and parentheses


def start_time(pid: int | str = "self") -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with
    the pid, it names one process even when the pid is reused. None when it is not there."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def alive(pid: int, started: int | None) -> bool:
    """True while `pid` runs in this pid namespace and, when `started` is known, is the process
    that started then (not a later one given the same pid). A zombie has exited."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in (b"Z", b"X"):
        return False
    if started is None:
        return True
    try:
        return int(fields[19]) == started
    except (IndexError, ValueError):
        return False


def comm(pid: int | str = "self") -> str:
    """A process's short name as ps shows it (/proc/PID/comm: a title set with setproctitle,
    e.g. vLLM's `VLLM::Worker_TP0`, shows there), at most MAX_NAME characters; "" when unknown."""
    try:
        name = (PROC / str(pid) / "comm").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return name.strip()[:MAX_NAME]


def process_name() -> str:
    """This process's short name as ps and NVML show it, else its program's name."""
    return comm() or Path(sys.argv[0] or sys.executable).name[:MAX_NAME]
