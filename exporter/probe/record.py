"""The probe's file: what one serving process writes about its allocator, and how it is read.

One JSON object per process, in a file of its own (`<pid>-<pid namespace>.json`: two
containers of a pod may both have a pid 7), replaced atomically at every write:

    {"format": 1, "pid": 4242, "pid_namespace": 4026531836, "start_time": 81234,
     "process": "VLLM::Worker_TP", "timestamp": 1767225600.25, "interval": 5.0,
     "expandable_segments": false,
     "devices": [{"index": 0, "uuid": "5a1e7d0c-3b7e-...", "physical_index": 3,
                  "stats": {"allocated_bytes.all.current": 6442450944, ...}}]}

`uuid` is torch's spelling (no "GPU-" prefix); `stats` holds torch's own keys, the ones in
`stats.KEPT` that torch reported (inactive split is absent when torch leaves it out). A reader
of format 1 ignores keys it does not know; a change that old readers would misread gets a new
format number. Stdlib only: the serving process imports this, and so does the exporter.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from exporter.probe.stats import KEPT, DeviceReading

FORMAT = 1
SUFFIX = ".json"
#: Temporary files start with a dot: a reader never takes one for a probe's file.
TEMP_PREFIX = "."
#: Readable by the pod's other containers (the exporter may run as another user), writable by
#: its owner only: the exporter refuses a group- or world-writable file.
FILE_MODE = 0o644
#: A probe's file is a few hundred bytes per device; anything larger is not one.
MAX_FILE_BYTES = 1 << 20
MAX_DEVICES = 64
MAX_PROCESS_NAME = 64
MAX_INTERVAL = 3600.0

_UUID = re.compile(r"^(?:GPU-|MIG-)?[0-9A-Fa-f][0-9A-Fa-f-]{7,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CorruptRecord(ValueError):
    """A file that is not a probe record this reader understands (the message says what is
    wrong; of what the file holds it repeats at most a format number)."""


@dataclass(frozen=True)
class ProbeRecord:
    pid: int
    pid_namespace: int | None
    start_time: int | None  # clock ticks since boot (procfs.start_time)
    process: str
    timestamp: float  # Unix time of the write
    interval: float  # seconds between writes
    expandable_segments: bool
    devices: tuple[DeviceReading, ...]

    @property
    def file_name(self) -> str:
        return file_name(self.pid, self.pid_namespace)


def file_name(pid: int, pid_namespace: int | None) -> str:
    return f"{pid}-{pid_namespace or 0}{SUFFIX}"


def encode(record: ProbeRecord) -> bytes:
    """The record as the probe writes it."""
    return json.dumps(
        {
            "format": FORMAT,
            "pid": record.pid,
            "pid_namespace": record.pid_namespace,
            "start_time": record.start_time,
            "process": record.process,
            "timestamp": record.timestamp,
            "interval": record.interval,
            "expandable_segments": record.expandable_segments,
            "devices": [
                {
                    "index": d.index,
                    "uuid": d.uuid,
                    "physical_index": d.physical_index,
                    "stats": {k: int(d.stats[k]) for k in KEPT if k in d.stats},
                }
                for d in record.devices
            ],
        },
        separators=(",", ":"),
    ).encode()


def decode(data: bytes) -> ProbeRecord:
    """The record in a probe's file; CorruptRecord saying what is wrong (torn, not JSON, a
    format this reader does not know, a field out of range)."""
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptRecord("not a JSON document (torn or not a probe's file)") from None
    if not isinstance(obj, dict):
        raise CorruptRecord("not a JSON object")
    version = obj.get("format")
    if version != FORMAT:
        said = f"format {version}" if type(version) is int else "no format number"
        raise CorruptRecord(f"{said}: this exporter reads format {FORMAT}")
    devices = obj.get("devices")
    if not isinstance(devices, list) or len(devices) > MAX_DEVICES:
        raise CorruptRecord(f"devices must be a list of at most {MAX_DEVICES}")
    process = obj.get("process")
    if not isinstance(process, str):
        raise CorruptRecord("process must be a string")
    expandable = obj.get("expandable_segments", False)
    if not isinstance(expandable, bool):
        raise CorruptRecord("expandable_segments must be true or false")
    interval = _number(obj, "interval")
    if not 0 < interval <= MAX_INTERVAL:
        raise CorruptRecord(f"interval must be in (0, {MAX_INTERVAL:g}] seconds")
    return ProbeRecord(
        pid=_integer(obj, "pid", minimum=1),
        pid_namespace=_integer(obj, "pid_namespace", optional=True),
        start_time=_integer(obj, "start_time", optional=True),
        process=_CONTROL.sub("", process)[:MAX_PROCESS_NAME],
        timestamp=_number(obj, "timestamp"),
        interval=interval,
        expandable_segments=expandable,
        devices=tuple(_device(d, i) for i, d in enumerate(devices)),
    )


def _device(obj: object, position: int) -> DeviceReading:
    where = f"devices[{position}]"
    if not isinstance(obj, dict):
        raise CorruptRecord(f"{where} is not an object")
    uuid = obj.get("uuid")
    if not isinstance(uuid, str) or not _UUID.match(uuid):
        raise CorruptRecord(f"{where}.uuid is not a GPU UUID")
    stats = obj.get("stats")
    if not isinstance(stats, dict):
        raise CorruptRecord(f"{where}.stats is not an object")
    kept = {}
    for key in KEPT:
        if key in stats:
            kept[key] = _integer(stats, key, where=f"{where}.stats")
    return DeviceReading(
        index=_integer(obj, "index", where=where),
        uuid=uuid,
        stats=kept,
        physical_index=_integer(obj, "physical_index", where=where, optional=True),
    )


def _integer(
    obj: dict, key: str, *, where: str = "", minimum: int = 0, optional: bool = False
) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        name = f"{where}.{key}" if where else key
        raise CorruptRecord(f"{name} must be a whole number of at least {minimum}")
    return value


def _number(obj: dict, key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CorruptRecord(f"{key} must be a number")
    return float(value)
