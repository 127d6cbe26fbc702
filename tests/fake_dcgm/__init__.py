"""A fake DCGM: Python modules with the API of DCGM's bindings, over a simulated hostengine.

`bindings/` holds `pydcgm`, `dcgm_structs`, `dcgm_fields`, `dcgm_agent` (and the helpers the
real pydcgm uses: `dcgm_field_helpers`, `dcgmvalue`), with the names, arguments, return codes
and exception classes of the real ones (NVIDIA/DCGM testing/python3), answering from
`fake_dcgm_engine` where the real ones call libdcgm. The exporter finds them as it finds the
real ones: through DCGM_BINDINGS_PATH (`subprocess_env` for a subprocess; the `fake_dcgm`
fixture for in-process tests).

Commands (config file FAKE_DCGM_CONFIG, append-only control file FAKE_DCGM_CONTROL, or
`FakeDcgm.configure` / `command` in-process), one per line, `#` starts a comment, `gpu *`
applies to every GPU:

  gpus N                        N GPUs (resets them; default 8 H100s)
  nvlinks N                     NVLink links per GPU (default 18; 0 for PCIe boards)
  names old|4.6                 constant names of DCGM before 4.6, or of 4.6 (default): the old
                                names resolve there too, with a DeprecationWarning
  library 0|1                   0: libdcgm.so.4 is missing (LIBRARY_NOT_FOUND)
  hostengine down|up|restart    down: calls on a connection and new connects fail with
                                CONNECTION_NOT_VALID; up/restart: a new hostengine (field groups,
                                watches and old handles gone)
  hostengine unknown F,F...     a hostengine older than these fields: a field group naming one
                                is refused (BADPARAM), e.g. 1523 before DCGM 4.5
  driver V                      driver version
  profiling ok|requires_root|not_supported|module_not_loaded|in_use
                                what watching a profiling field (1001+) answers
  profiling paused 0|1          paused: profiling values are blank (dcgmi profile --pause)
  gpu I lost | recover          DCGM status Lost (every value blank) / OK again
  gpu I name TEXT | nvml_index J
  gpu I utilization PCT         fix the utilization (-1: a slow sine wave)
  gpu I reasons MASK            clock event reasons bitmask (-1: gpu_idle when utilization is 0)
  gpu I blank F,F... [KIND]     fields (numbers) blank: blank|not_found|not_supported|
                                no_permission (the sentinel DCGM stores); `unblank F,F...`
  gpu I xid CODE                an Xid: field 230 becomes CODE with the current timestamp
  gpu I recovery_action A       field 1523 (the driver's recovery action) answers A (0-7);
                                `gpu I blank 1523 [KIND]` plays a driver or DCGM without it
  gpu I link L up|down|disabled
  gpu I ecc_sbe|ecc_dbe|pcie_replay|crc_flit|crc_data|replay|recovery N   add N
  gpu I remap COR UNC PENDING FAILURE
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

BINDINGS_DIR = Path(__file__).resolve().parent / "bindings"


def subprocess_env(config: Path | None = None, control: Path | None = None) -> dict[str, str]:
    """Environment for an exporter subprocess that must find the fake as DCGM's bindings."""
    return {
        "DCGM_BINDINGS_PATH": str(BINDINGS_DIR),
        "FAKE_DCGM_CONFIG": str(config) if config else "",
        "FAKE_DCGM_CONTROL": str(control) if control else "",
    }


class ControlFile:
    """The append-only command file a subprocess's fake reads (FAKE_DCGM_CONTROL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")

    def send(self, *lines: str) -> None:
        with self.path.open("a") as f:
            f.write("".join(line + "\n" for line in lines))


class FakeDcgm:
    """The fake loaded in this process (its modules in sys.modules), with its test hooks."""

    def __init__(self) -> None:
        if str(BINDINGS_DIR) not in sys.path:
            sys.path.insert(0, str(BINDINGS_DIR))
        import fake_dcgm_engine

        self.module: ModuleType = fake_dcgm_engine
        self.engine = fake_dcgm_engine.ENGINE

    def configure(self, text: str = "") -> None:
        """Reset the hostengine, GPUs and counters, then apply `text`."""
        self.engine.configure(text)

    def command(self, text: str) -> None:
        self.engine.command(text)

    def calls(self, function: str) -> int:
        return int(self.engine.calls[function])

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Make the engine's timestamps and values follow `clock` (seconds)."""
        self.engine.clock = clock
        self.engine.start = clock()
