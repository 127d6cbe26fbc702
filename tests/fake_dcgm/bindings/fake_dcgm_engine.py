"""The state behind the fake DCGM bindings: a hostengine with GPUs, field groups and watches.

Not a DCGM module: the fake dcgm_agent calls into it where the real one calls libdcgm. It plays
several GPUs, blank values (every sentinel kind), a hostengine that goes away and comes back
(restarted: our handles, field groups and watches are gone), a lost GPU, Xid events in the
last-value field 230, NVLink link states, a profiling module that refuses (root, not supported,
not loaded, in use) or is paused, a missing libdcgm, and the pre-4.6 or the 4.6 constant names.

State is set by text commands (see tests/fake_dcgm/__init__.py for the list):
- from the file named by FAKE_DCGM_CONFIG, read when the engine is first used;
- from the file named by FAKE_DCGM_CONTROL, an append-only file whose new lines are applied at
  every call (so a test can stop the hostengine inside an exporter subprocess);
- in-process through `ENGINE.configure()` / `ENGINE.command()`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# DCGM_ST_* codes used here (the fake dcgm_structs defines them all).
OK, BADPARAM, NOT_SUPPORTED, CONNECTION_NOT_VALID, LIBRARY_NOT_FOUND = 0, -1, -6, -21, -25
DUPLICATE_KEY, REQUIRES_ROOT, MODULE_NOT_LOADED, IN_USE, PROFILING_NOT_SUPPORTED = (
    -26,
    -29,
    -33,
    -34,
    -36,
)
NO_DATA, NOT_WATCHED, GPU_IS_LOST = -14, -16, -18

INT64_BLANK = 0x7FFFFFFFFFFFFFF0
FP64_BLANK = 140737488355328.0
BLANK_KINDS = {"blank": 0, "not_found": 1, "not_supported": 2, "no_permission": 3}
PROFILING_MODES = {
    "ok": OK,
    "requires_root": REQUIRES_ROOT,
    "not_supported": PROFILING_NOT_SUPPORTED,
    "module_not_loaded": MODULE_NOT_LOADED,
    "in_use": IN_USE,
}
STATUS_OK, STATUS_LOST = 1, 4
COUNTERS = ("ecc_sbe", "ecc_dbe", "pcie_replay", "crc_flit", "crc_data", "replay", "recovery")
LINK_NOT_SUPPORTED, LINK_DISABLED, LINK_DOWN, LINK_UP = 0, 1, 2, 3
MAX_LINKS = 18
PROFILING = range(1001, 1100)  # the DCGM_FI_PROF_* fields


class EngineError(Exception):
    """A DCGM return code from the engine (dcgm_agent turns it into a DCGMError)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


#: The fields the fake knows: number -> ('i' int64 | 'd' double, the 4.6 name, old names).
FIELDS: dict[int, tuple[str, str, tuple[str, ...]]] = {
    52: ("i", "DCGM_FI_DEV_NVML_INDEX", ()),
    100: ("i", "DCGM_FI_DEV_SM_CLOCK", ()),
    101: ("i", "DCGM_FI_DEV_MEM_CLOCK", ()),
    102: ("i", "DCGM_FI_DEV_VIDEO_CLOCK", ()),
    112: ("i", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",)),
    113: ("i", "DCGM_FI_DEV_MAX_SM_CLOCK", ()),
    114: ("i", "DCGM_FI_DEV_MAX_MEM_CLOCK", ()),
    115: ("i", "DCGM_FI_DEV_MAX_VIDEO_CLOCK", ()),
    140: ("i", "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", ("DCGM_FI_DEV_MEMORY_TEMP",)),
    150: ("i", "DCGM_FI_DEV_GPU_TEMP_CELSIUS", ("DCGM_FI_DEV_GPU_TEMP",)),
    155: ("d", "DCGM_FI_DEV_POWER_USAGE_WATTS", ("DCGM_FI_DEV_POWER_USAGE",)),
    156: ("i", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", ()),
    164: ("d", "DCGM_FI_DEV_ENFORCED_POWER_LIMIT_WATTS", ("DCGM_FI_DEV_ENFORCED_POWER_LIMIT",)),
    202: ("i", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", ()),
    203: ("i", "DCGM_FI_DEV_GPU_UTIL", ()),
    204: ("i", "DCGM_FI_DEV_MEM_COPY_UTIL", ()),
    230: ("i", "DCGM_FI_DEV_XID_ERRORS", ()),
    250: ("i", "DCGM_FI_DEV_FB_TOTAL", ()),
    251: ("i", "DCGM_FI_DEV_FB_FREE", ()),
    252: ("i", "DCGM_FI_DEV_FB_USED", ()),
    253: ("i", "DCGM_FI_DEV_FB_RESERVED", ()),
    310: ("i", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", ()),
    311: ("i", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", ()),
    393: ("i", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", ()),
    394: ("i", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", ()),
    395: ("i", "DCGM_FI_DEV_ROW_REMAP_FAILURE", ()),
    396: ("i", "DCGM_FI_DEV_ROW_REMAP_PENDING", ()),
    409: ("i", "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", ()),
    419: ("i", "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", ()),
    429: ("i", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", ()),
    439: ("i", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", ()),
    1523: ("i", "DCGM_FI_DEV_GPU_RECOVERY_ACTION", ("DCGM_FI_DEV_GET_GPU_RECOVERY_ACTION",)),
    1001: ("d", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", ()),
    1002: ("d", "DCGM_FI_PROF_SM_ACTIVE", ()),
    1003: ("d", "DCGM_FI_PROF_SM_OCCUPANCY", ()),
    1004: ("d", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", ()),
    1005: ("d", "DCGM_FI_PROF_DRAM_ACTIVE", ()),
    1009: ("i", "DCGM_FI_PROF_PCIE_TX_BYTES", ()),
    1010: ("i", "DCGM_FI_PROF_PCIE_RX_BYTES", ()),
    1011: ("i", "DCGM_FI_PROF_NVLINK_TX_BYTES", ()),
    1012: ("i", "DCGM_FI_PROF_NVLINK_RX_BYTES", ()),
}
#: Fields whose 4.6 name differs from the old one (the old one warns in 4.6 mode).
RENAMED = {old: new for _, new, olds in FIELDS.values() for old in olds}
NEW_ONLY = {new for _, new, olds in FIELDS.values() if olds}


@dataclass
class Gpu:
    index: int
    name: str = "NVIDIA H100 80GB HBM3"
    nvml_index: int = -1
    lost: bool = False
    utilization: int = -1  # -1: a slow sine wave
    reasons: int = -1  # -1: derived from utilization
    blanks: dict[int, int] = field(default_factory=dict)  # field -> blank kind offset
    counters: Counter = field(default_factory=Counter)  # ecc_sbe, ecc_dbe, pcie_replay, ...
    remap: tuple[int, int, int, int] = (0, 0, 0, 0)  # correctable, uncorrectable, pend, fail
    links: list[int] = field(default_factory=list)
    xid: tuple[int, int] | None = None  # (code, ts usec) of the last Xid
    recovery_action: int = 0  # nvmlDeviceGpuRecoveryAction_t, field 1523

    @property
    def uuid(self) -> str:
        return f"GPU-dc6e{self.index:04x}-0000-4000-8000-000000000000"

    @property
    def pci_bus_id(self) -> str:
        buses = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)
        return f"00000000:{buses[self.index % len(buses)]:02X}:00.0"


@dataclass
class Watch:
    update_us: int
    field_ids: tuple[int, ...]


class Engine:
    """One fake hostengine (and the embedded one: the same GPUs, never stopped)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock: Callable[[], float] = time.time
        self.calls: Counter = Counter()
        self._control_path = ""
        self._control_offset = 0
        self._loaded = False
        self.reset()

    # --- configuration ----------------------------------------------------------------------

    def reset(self) -> None:
        self.names = "4.6"
        self.library = True
        self.hostengine_up = True
        self.generation = 1  # bumped by a hostengine restart: older handles are invalid
        self.driver = "550.90.07"
        self.profiling = "ok"
        self.profiling_paused = False
        self.nvlinks = MAX_LINKS
        self.unknown_fields: set[int] = set()  # fields newer than this hostengine
        self.start = self.clock()
        self.gpus = [self._gpu(i) for i in range(8)]
        self.field_groups: dict[int, tuple[int, str, tuple[int, ...]]] = {}  # id: gen, name
        self.watches: dict[int, Watch] = {}
        self.handles: dict[int, int] = {}  # handle -> generation (0: embedded)
        self._next_id = 1

    def _gpu(self, i: int) -> Gpu:
        return Gpu(i, nvml_index=i, links=[LINK_UP] * self.nvlinks)

    def ensure_loaded(self) -> None:
        """Read FAKE_DCGM_CONFIG once, and the new lines of FAKE_DCGM_CONTROL every time."""
        with self.lock:
            if not self._loaded:
                self._loaded = True
                config = os.environ.get("FAKE_DCGM_CONFIG", "")
                if config and os.path.exists(config):
                    with open(config) as f:
                        self.configure(f.read())
                self._control_path = os.environ.get("FAKE_DCGM_CONTROL", "")
            if self._control_path:
                try:
                    with open(self._control_path) as f:
                        f.seek(self._control_offset)
                        new = f.read()
                except OSError:
                    return
                if new.endswith("\n") or not new:
                    self._control_offset += len(new.encode())
                    if new:
                        self.command(new)

    def configure(self, text: str) -> None:
        """Reset everything, then apply `text`."""
        with self.lock:
            self._loaded = True
            self.reset()
            self.command(text)

    def command(self, text: str) -> None:
        """Apply commands, one per line (see tests/fake_dcgm/__init__.py)."""
        with self.lock:
            for n, raw in enumerate(text.splitlines(), 1):
                line = raw.split("#", 1)[0].split()
                if not line:
                    continue
                try:
                    self._apply(line)
                except (ValueError, IndexError, KeyError) as exc:
                    raise ValueError(f"fake DCGM, line {n} {raw!r}: {exc}") from None

    def _apply(self, w: list[str]) -> None:
        head = w[0]
        if head == "gpus":
            self.gpus = [self._gpu(i) for i in range(int(w[1]))]
        elif head == "nvlinks":
            self.nvlinks = int(w[1])
            for g in self.gpus:
                g.links = [LINK_UP] * self.nvlinks
        elif head == "names":
            if w[1] not in ("old", "4.6"):
                raise ValueError("names old|4.6")
            self.names = w[1]
        elif head == "library":
            self.library = w[1] == "1"
        elif head == "hostengine":
            if w[1] == "down":
                self.hostengine_up = False
            elif w[1] in ("up", "restart"):
                self.hostengine_up = True
                self.generation += 1
                self.field_groups.clear()
                self.watches.clear()
            elif w[1] == "unknown":
                self.unknown_fields = {int(n) for n in w[2].split(",")}
            else:
                raise ValueError("hostengine down|up|restart|unknown F,F...")
        elif head == "driver":
            self.driver = w[1]
        elif head == "profiling":
            if w[1] == "paused":
                self.profiling_paused = w[2] == "1"
            elif w[1] in PROFILING_MODES:
                self.profiling = w[1]
            else:
                raise ValueError(f"profiling {'|'.join(PROFILING_MODES)}|paused 0|1")
        elif head == "gpu":
            targets = self.gpus if w[1] == "*" else [self.gpus[int(w[1])]]
            for g in targets:
                self._apply_gpu(g, w[2:])
        else:
            raise ValueError(f"unknown command {head!r}")

    def _apply_gpu(self, g: Gpu, w: list[str]) -> None:
        what = w[0]
        if what == "lost":
            g.lost = True
        elif what == "recover":
            g.lost = False
        elif what == "name":
            g.name = " ".join(w[1:])
        elif what == "nvml_index":
            g.nvml_index = int(w[1])
        elif what == "utilization":
            g.utilization = int(w[1])
        elif what == "reasons":
            g.reasons = int(w[1], 0)
        elif what == "blank":
            kind = BLANK_KINDS[w[2]] if len(w) > 2 else 0
            for number in w[1].split(","):
                g.blanks[int(number)] = kind
        elif what == "unblank":
            for number in w[1].split(","):
                g.blanks.pop(int(number), None)
        elif what in COUNTERS:
            g.counters[what] += int(w[1])
        elif what == "remap":
            g.remap = (int(w[1]), int(w[2]), int(w[3]), int(w[4]))
        elif what == "link":
            states = {"up": LINK_UP, "down": LINK_DOWN, "disabled": LINK_DISABLED}
            g.links[int(w[1])] = states[w[2]]
        elif what == "recovery_action":
            action = int(w[1])
            if not 0 <= action <= 7:
                raise ValueError("recovery_action 0-7")
            g.recovery_action = action
        elif what == "xid":
            now = int(self.clock() * 1e6)
            last = g.xid[1] if g.xid else 0
            g.xid = (int(w[1]), max(now, last + 1))
        else:
            raise ValueError(f"unknown GPU command {what!r}")

    # --- what dcgm_agent calls -------------------------------------------------------------

    def call(self, name: str) -> None:
        """Every API entry: count it and pick up control-file commands."""
        self.ensure_loaded()
        self.calls[name] += 1

    def connect(self, address: str) -> int:
        with self.lock:
            if not self.hostengine_up:
                raise EngineError(CONNECTION_NOT_VALID)
            return self._new_handle(self.generation)

    def start_embedded(self) -> int:
        with self.lock:
            return self._new_handle(0)

    def _new_handle(self, generation: int) -> int:
        handle = self._next_id
        self._next_id += 1
        self.handles[handle] = generation
        return handle

    def disconnect(self, handle: int) -> None:
        with self.lock:
            self.handles.pop(int(handle), None)

    def check(self, handle: int) -> None:
        """A call on `handle`: CONNECTION_NOT_VALID when its hostengine went away."""
        with self.lock:
            generation = None if handle is None else self.handles.get(int(handle))
            if generation is None:
                raise EngineError(CONNECTION_NOT_VALID)
            if generation and (not self.hostengine_up or generation != self.generation):
                raise EngineError(CONNECTION_NOT_VALID)

    def gpu(self, gpu_id: int) -> Gpu:
        if not 0 <= gpu_id < len(self.gpus):
            raise EngineError(BADPARAM)
        return self.gpus[gpu_id]

    def create_field_group(self, handle: int, field_ids: list[int], name: str) -> int:
        with self.lock:
            self.check(handle)
            if any(n == name for _, n, _ in self.field_groups.values()):
                raise EngineError(DUPLICATE_KEY)
            known = set(FIELDS) - self.unknown_fields
            if not field_ids or any(f not in known for f in field_ids):
                raise EngineError(BADPARAM)
            fg = self._next_id
            self._next_id += 1
            self.field_groups[fg] = (self.generation, name, tuple(field_ids))
            return fg

    def destroy_field_group(self, handle: int, fg: int) -> None:
        with self.lock:
            self.check(handle)
            if self.field_groups.pop(int(fg), None) is None:
                raise EngineError(NO_DATA)
            self.watches.pop(int(fg), None)

    def watch(self, handle: int, fg: int, update_us: int) -> None:
        with self.lock:
            self.check(handle)
            group = self.field_groups.get(int(fg))
            if group is None:
                raise EngineError(BADPARAM)
            ids = group[2]
            if any(f in PROFILING for f in ids) and self.profiling != "ok":
                raise EngineError(PROFILING_MODES[self.profiling])
            self.watches[int(fg)] = Watch(int(update_us), ids)

    def unwatch(self, handle: int, fg: int) -> None:
        with self.lock:
            self.check(handle)
            self.watches.pop(int(fg), None)

    def latest(self, handle: int, fg: int) -> dict[int, list[tuple[int, str, int, object, int]]]:
        """Per GPU: (field, type, status, value, ts) of each field of the group."""
        with self.lock:
            self.check(handle)
            group = self.field_groups.get(int(fg))
            if group is None:
                raise EngineError(BADPARAM)
            watch = self.watches.get(int(fg))
            now = self.clock()
            out = {}
            for g in self.gpus:
                rows = []
                for fid in group[2]:
                    kind = FIELDS[fid][0]
                    if watch is None:
                        rows.append((fid, kind, NOT_WATCHED, None, 0))
                        continue
                    step = watch.update_us / 1e6
                    t = math.floor(now / step) * step
                    rows.append(self._value(g, fid, kind, t))
                out[g.index] = rows
            return out

    # --- values ------------------------------------------------------------------------------

    def util(self, g: Gpu, t: float) -> int:
        if g.utilization >= 0:
            return g.utilization
        return int(50 + 40 * math.sin((t - self.start) / 30.0 + g.index))

    def _value(self, g: Gpu, fid: int, kind: str, t: float) -> tuple:
        ts = int(t * 1e6)
        if fid == 230:  # an event field: a sample once an Xid happened, kept when the GPU is lost
            if g.xid is None:
                return (fid, kind, OK, INT64_BLANK, ts)
            return (fid, kind, OK, g.xid[0], g.xid[1])
        if g.lost:
            return (fid, kind, OK, _blank(kind, 0), ts)
        if fid in g.blanks:
            return (fid, kind, OK, _blank(kind, g.blanks[fid]), ts)
        if fid in PROFILING and self.profiling_paused:
            return (fid, kind, OK, _blank(kind, 0), ts)
        if fid in (1011, 1012) and not self.nvlinks:
            return (fid, kind, OK, _blank(kind, 2), ts)
        value = self._number(g, fid, t)
        return (fid, kind, OK, float(value) if kind == "d" else int(value), ts)

    def _number(self, g: Gpu, fid: int, t: float) -> float:
        u = self.util(g, t)
        power = 90.0 + 6.0 * u
        total, reserved = 81559, 510
        used = 1024 + 600 * u
        c, r = g.counters, g.remap
        reasons = g.reasons if g.reasons >= 0 else (0x1 if u == 0 else 0)
        table: dict[int, float] = {
            52: g.nvml_index,
            100: 1980 if u else 345,
            101: 2619,
            102: 1755 if u else 765,
            112: reasons,
            113: 1980,
            114: 2619,
            115: 1755,
            140: 35 + u // 3 + 6,
            150: 35 + u // 3,
            155: power,
            156: 1_000_000 * (g.index + 1) + int(max(0.0, t - self.start) * power * 1000),
            164: 700.0,
            202: c["pcie_replay"],
            203: u,
            204: u * 2 // 5,
            250: total,
            251: total - reserved - used,
            252: used,
            253: reserved,
            310: c["ecc_sbe"],
            311: c["ecc_dbe"],
            393: r[1],
            394: r[0],
            395: r[3],
            396: r[2],
            409: c["crc_flit"],
            419: c["crc_data"],
            429: c["replay"],
            439: c["recovery"],
            1001: u / 100.0,
            1002: u / 100.0 * 0.8,
            1003: u / 100.0 * 0.35,
            1004: u / 100.0 * 0.45,
            1005: u / 100.0 * 0.3,
            1009: u * 10_000_000,
            1010: u * 12_000_000,
            1011: u * 1_000_000_000,
            1012: u * 900_000_000,
            1523: g.recovery_action,
        }
        return table[fid]

    def attributes(self, handle: int, gpu_id: int) -> Gpu:
        self.check(handle)
        return self.gpu(gpu_id)

    def status(self, handle: int, gpu_id: int) -> int:
        self.check(handle)
        return STATUS_LOST if self.gpu(gpu_id).lost else STATUS_OK

    def link_states(self, handle: int) -> list[tuple[int, list[int]]]:
        self.check(handle)
        return [
            (g.index, (g.links + [LINK_NOT_SUPPORTED] * MAX_LINKS)[:MAX_LINKS]) for g in self.gpus
        ]


def _blank(kind: str, offset: int) -> float | int:
    return FP64_BLANK + offset if kind == "d" else INT64_BLANK + offset


ENGINE = Engine()
