"""The probe end to end: two real serving processes (the probe on the fake CUDA allocator,
tests/fake_cuda.py) writing into a directory that the exporter (a real subprocess, simulated
fleet) reads with --torch.probe-dir; one killed, a corrupt file, files planted by another user
and with a loose mode: /metrics checked right after each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from exporter.probe import procfs
from exporter.probe.record import file_name
from exporter.sources.simulated import SimulatedSource
from tests.conftest import REPO, RunningExporter, run_exporter

pytestmark = pytest.mark.e2e

GIB = 2**30
UUIDS = SimulatedSource().uuids  # the simulated fleet's GPUs stand for the node's (seed 0)


class ServingProcess:
    """A subprocess running the probe every 0.2 s on fake CUDA devices."""

    def __init__(self, directory, devices: list[dict], **spec) -> None:
        spec = {"devices": devices, **spec}
        cmd = [sys.executable, "-m", "tests.fake_cuda", str(directory), "0.2", json.dumps(spec)]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = str(self.proc.pid)
        self.file = directory / file_name(self.proc.pid, procfs.pid_namespace())

    def update(self, device: int, **figures: int) -> None:
        self.proc.stdin.write(json.dumps({"device": device, **figures}) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def device(index: int, allocated: int, reserved: int, split: int) -> dict:
    uuid = UUIDS[index].removeprefix("GPU-")  # torch's spelling
    return {"uuid": uuid, "allocated": allocated, "reserved": reserved, "inactive_split": split}


def of(m: dict, pid: str) -> dict[tuple[str, str], float]:
    """(family, gpu) → value of the torch_cuda_* series of one process."""
    out = {}
    for (name, labels), value in m.items():
        lb = dict(labels)
        if name.startswith("torch_cuda_") and lb.get("pid") == pid:
            assert lb["uuid"] == UUIDS[int(lb["gpu"])] and lb["process"]
            out[(name, lb["gpu"])] = value
    return out


def files(m: dict) -> dict[str, float]:
    return {dict(lb)["state"]: v for (n, lb), v in m.items() if n == "exporter_torch_probe_files"}


def until(exp: RunningExporter, check: Callable[[dict], bool], what: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        m = exp.metrics()
        if check(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics never showed {what}: {files(m)}")
        time.sleep(0.1)


@pytest.mark.time_limit(90)
def test_two_serving_processes_one_killed_a_corrupt_file_and_planted_ones(tmp_path):
    a = ServingProcess(
        tmp_path,
        [device(3, 6 * GIB, 10 * GIB, GIB), device(5, GIB, 2 * GIB, 0)],
        env={"CUDA_VISIBLE_DEVICES": "0,1"},  # not the node's index: NVML's (here the fleet's) wins
    )
    b = ServingProcess(tmp_path, [device(3, 2 * GIB, 4 * GIB, GIB)], expandable=True)
    try:
        args = ("--backend=simulated", "--collect.interval=0.2", f"--torch.probe-dir={tmp_path}")
        with run_exporter(*args) as exp:
            m = until(exp, lambda m: of(m, a.pid) and of(m, b.pid), "both processes")
            assert of(m, a.pid) == {
                ("torch_cuda_memory_allocated_bytes", "3"): 6 * GIB,
                ("torch_cuda_memory_reserved_bytes", "3"): 10 * GIB,
                ("torch_cuda_memory_inactive_split_bytes", "3"): GIB,
                ("torch_cuda_fragmentation_ratio", "3"): 0.1,
                ("torch_cuda_alloc_retries_total", "3"): 0,
                ("torch_cuda_ooms_total", "3"): 0,
                ("torch_cuda_memory_allocated_bytes", "5"): GIB,
                ("torch_cuda_memory_reserved_bytes", "5"): 2 * GIB,
                ("torch_cuda_memory_inactive_split_bytes", "5"): 0,
                ("torch_cuda_fragmentation_ratio", "5"): 0,
                ("torch_cuda_alloc_retries_total", "5"): 0,
                ("torch_cuda_ooms_total", "5"): 0,
            }
            # expandable segments: no inactive split, the ratio from what is reserved unused
            assert ("torch_cuda_memory_inactive_split_bytes", "3") not in of(m, b.pid)
            assert of(m, b.pid)[("torch_cuda_fragmentation_ratio", "3")] == 0.5
            assert files(m) == {"live": 2, "stale": 0, "refused": 0, "corrupt": 0}

            a.update(0, allocated=9 * GIB, retries=2, ooms=1)
            until(
                exp,
                lambda m: of(m, a.pid).get(("torch_cuda_ooms_total", "3")) == 1,
                "process a's OOM",
            )

            b.kill()  # no goodbye: the exporter sees its pid gone
            m = until(exp, lambda m: not of(m, b.pid), "process b's series gone")
            assert not b.file.exists()
            assert of(m, a.pid)[("torch_cuda_memory_allocated_bytes", "3")] == 9 * GIB
            assert files(m)["live"] == 1

            torn = tmp_path / file_name(os.getpid(), procfs.pid_namespace())
            torn.write_bytes(a.file.read_bytes()[:80])
            m = until(exp, lambda m: files(m)["corrupt"] == 1, "the corrupt file")
            assert len(of(m, a.pid)) == 12 and not of(m, str(os.getpid()))

            # another user's file and a group-writable one, each a well-formed record of a
            # live process (this test's and its parent): neither is believed
            record = json.loads(a.file.read_bytes())
            for pid, owner, mode in ((os.getpid(), 12345, 0o644), (os.getppid(), 0, 0o664)):
                planted = tmp_path / file_name(pid, procfs.pid_namespace())
                planted.unlink(missing_ok=True)
                start = procfs.start_time(pid)
                planted.write_text(json.dumps({**record, "pid": pid, "start_time": start}))
                os.chown(planted, owner, owner)
                planted.chmod(mode)
            m = until(exp, lambda m: files(m)["refused"] == 2, "two refused files")
            assert not of(m, str(os.getpid())) and not of(m, str(os.getppid()))
            assert len(of(m, a.pid)) == 12 and files(m)["live"] == 1

            a.stop()  # a clean exit: the probe removes its own file
            m = until(exp, lambda m: not of(m, a.pid), "process a's series gone")
            assert files(m) == {"live": 0, "stale": 0, "refused": 2, "corrupt": 0}
            time.sleep(0.5)  # more collections: nothing more is said about the same files
        log = exp.process.stdout.read()
    finally:
        a.stop()
        b.kill()
    assert log.count(f"skipped {torn}") == 1, log
    assert log.count("owned by uid 12345, not a trusted writer") == 1, log
    assert log.count("writable by group or others (mode 664)") == 1, log
    assert f"(pid {b.pid}) exited" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        file_name(pid, procfs.pid_namespace()) for pid in (os.getpid(), os.getppid())
    )  # the refused files are not the exporter's to remove (the torn one was replaced)
