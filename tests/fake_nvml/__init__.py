"""A fake NVML: a small C library (fake_nvml.c) that pynvml loads like the real libnvidia-ml.

Two builds from the same source:
- `libnvidia-ml.so.1` (soname libnvidia-ml.so.1), for a subprocess started with
  LD_LIBRARY_PATH pointing at its directory (`subprocess_env`): the exporter, scripts/gpu-check
  and nvitop-exporter load it exactly as they would load the driver's library;
- `libfakenvml-inprocess.so` (its own soname), assigned to `pynvml.nvmlLib` by the in-process
  tests. Its soname differs on purpose: once a library named libnvidia-ml.so.1 is loaded, every
  later dlopen("libnvidia-ml.so.1") in the process gets it, and other tests must keep seeing a
  machine without a driver.

Commands (config file, control file, `FakeNvml.configure` / `command`), one per line, `#`
starts a comment, `gpu *` applies to every GPU:

  gpus N                      N GPUs (resets them; default 8, an HGX H100 board)
  nvlinks N                   NVLink links per GPU (default 18; 0 for a PCIe board)
  name TEXT / driver V / cuda N        what the GPUs and the driver report
  driver_loaded 0|1           0: nvmlInit fails with DriverNotLoaded
  missing FN[,FN...]          these entry points answer FunctionNotFound, as pynvml reports a
                              symbol the driver's library lacks (names as in FUNCTIONS in the C)
  pcie_throughput_us N        how long nvmlDeviceGetPcieThroughput blocks (default 20000)
  gpu I unsupported F,F...    NotSupported for features: utilization memory_v2 temperature
                              memory_temperature power power_limit energy clocks video_clock
                              clock_reasons pcie_replay nvlink nvlink_errors ecc remapped_rows
                              mig processes events field_values (the whole call)
                              nvlink_state_field (field 165: link states by field)
  gpu I mig K                 MIG mode on with K MIG devices (1g.10gb, GPU instances 1..K)
  gpu I process PID NAME BYTES [GI]    a compute process (on MIG GPU instance GI)
  gpu I clear_processes
  gpu I lost | unknown        every call on the GPU fails with GpuIsLost | Unknown
  gpu I recover               the GPU answers again after the next full re-initialisation
  gpu I xid CODE [N]          deliver N Xid events (default 1) to the event sets
  gpu I reasons MASK          clock event reasons bitmask (-1: derived from utilization)
  gpu I utilization PCT       fix the utilization (-1: a slow sine wave)
  gpu I link L up|down        NVLink link state (its data counters stop while down)
  gpu I ecc corrected|uncorrected N     add N volatile ECC errors
  gpu I nvlink_error crc_flit|crc_data|replay|recovery N
  gpu I remap COR UNC PENDING FAILURE   remapped rows
  gpu I pcie_replay N         add N PCIe replays
  gpu I recovery_action A     field 230 (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION) answers A (0 none,
                              1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain and reset, ...7);
                              `unsupported`: that entry answers NotSupported (a driver < R565)
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pynvml

SOURCE = Path(__file__).with_name("fake_nvml.c")
DRIVER_SONAME = "libnvidia-ml.so.1"
INPROCESS_NAME = "libfakenvml-inprocess.so"


class FakeNvmlBuildError(RuntimeError):
    pass


def build(directory: Path, name: str = DRIVER_SONAME) -> Path:
    """Compile the fake into directory/name (soname = name); reuse a build of the same source."""
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        raise FakeNvmlBuildError(
            "no C compiler: the fake NVML needs gcc (scripts/test installs Debian's gcc and "
            "libc6-dev when missing; or: apt-get install gcc libc6-dev)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / name
    digest = hashlib.sha256(SOURCE.read_bytes() + name.encode()).hexdigest()
    stamp = directory / f"{name}.sha256"
    if out.exists() and stamp.exists() and stamp.read_text() == digest:
        return out
    cmd = [cc, "-O2", "-Wall", "-Werror", "-shared", "-fPIC", f"-Wl,-soname,{name}"]
    cmd += ["-o", str(out), str(SOURCE), "-lpthread", "-lm"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise FakeNvmlBuildError(f"building the fake NVML failed:\n{result.stderr}")
    stamp.write_text(digest)
    return out


def subprocess_env(
    library: Path, config: Path | None = None, control: Path | None = None
) -> dict[str, str]:
    """Environment for a process that must load the fake as libnvidia-ml.so.1."""
    return {
        "LD_LIBRARY_PATH": str(library.parent),
        "FAKE_NVML_CONFIG": str(config) if config else "",
        "FAKE_NVML_CONTROL": str(control) if control else "",
    }


class FakeNvml:
    """The fake loaded in this process, with its test hooks."""

    def __init__(self, library: Path) -> None:
        self.lib = ctypes.CDLL(str(library))
        self.lib.fake_nvml_calls.restype = ctypes.c_ulonglong
        self.lib.fake_nvml_calls.argtypes = [ctypes.c_char_p, ctypes.c_int]
        for fn in (self.lib.fake_nvml_configure, self.lib.fake_nvml_command):
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]

    def _apply(self, fn, text: str) -> None:
        err = ctypes.create_string_buffer(256)
        bad = fn(text.encode(), err, len(err))
        if bad:
            raise ValueError(f"fake NVML, line {bad}: {err.value.decode()}")

    def configure(self, text: str = "") -> None:
        """Reset every GPU, counter and event set, then apply `text`."""
        self._apply(self.lib.fake_nvml_configure, text)

    def command(self, text: str) -> None:
        """Apply commands to the running fake (lose a GPU, send an Xid...)."""
        self._apply(self.lib.fake_nvml_command, text)

    def calls(self, function: str | None = None, gpu: int = -1) -> int:
        """Calls of `function` (every function: None) on GPU `gpu` (every GPU and none: -1)."""
        return int(self.lib.fake_nvml_calls(function.encode() if function else None, gpu))

    def init_count(self) -> int:
        """How many times NVML went from uninitialised to initialised."""
        return int(self.lib.fake_nvml_init_count())

    def struct_size(self, name: str) -> int:
        return int(self.lib.fake_nvml_struct_size(name.encode()))

    # --- pynvml wiring -----------------------------------------------------------------------

    def install(self) -> None:
        """Make pynvml use this library (as if it had loaded libnvidia-ml.so.1)."""
        _reset_pynvml()
        pynvml.nvmlLib = self.lib

    def uninstall(self) -> None:
        """Give pynvml back its 'no library loaded' state, and make the fake refuse to init."""
        _reset_pynvml()
        self.configure("driver_loaded 0")


def _reset_pynvml() -> None:
    with pynvml.libLoadLock:
        pynvml.nvmlLib = None
        pynvml._nvmlGetFunctionPointer_cache.clear()
        pynvml._nvmlLib_refcount = 0


class ControlFile:
    """The append-only command file a subprocess's fake reads (FAKE_NVML_CONTROL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_text("")

    def send(self, *lines: str) -> None:
        with self.path.open("a") as f:
            f.write("".join(line + "\n" for line in lines))
