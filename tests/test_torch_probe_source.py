"""The torch-probe source: the serving processes' probe files in, torch_cuda_* out; exited
processes cleaned, corrupt files skipped once-said, files it did not write refused."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from exporter.probe import procfs
from exporter.probe.record import ProbeRecord, encode, file_name
from exporter.probe.stats import ALLOCATED, INACTIVE_SPLIT, RESERVED, DeviceReading
from exporter.sources import SourceUnavailable
from exporter.sources.torch import GpuLookup, nvml_gpu_table
from exporter.sources.torch_probe import ProbeDirectorySource

NOW = 10_000.0
U0 = "5a1e7d0c-3b7e-4f4c-9d55-0123456789ab"
U1 = "9f0e1d2c-aaaa-bbbb-cccc-ddddeeeeffff"
TABLE = {f"GPU-{U0}": ("2", f"GPU-{U0}"), f"GPU-{U1}": ("5", f"GPU-{U1}")}
OTHER_NAMESPACE = 1  # no real pid namespace has inode 1: a process the exporter cannot see


@pytest.fixture
def exited_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def stats(allocated: int, reserved: int, split: int | None = 0) -> dict[str, int]:
    out = {ALLOCATED: allocated, RESERVED: reserved, "num_alloc_retries": 1, "num_ooms": 0}
    if split is not None:
        out[INACTIVE_SPLIT] = split
    return out


def record(
    pid: int = os.getpid(),
    *,
    namespace: int | None = None,
    started: int | None = None,
    process: str = "VLLM::Worker",
    timestamp: float = NOW - 1,
    devices: tuple[DeviceReading, ...] = (DeviceReading(0, U0, stats(100, 400, 50), 0),),
) -> ProbeRecord:
    ns = procfs.pid_namespace() if namespace is None else namespace
    start = procfs.start_time(pid) if started is None else started
    return ProbeRecord(pid, ns, start, process, timestamp, 1.0, False, devices)


def write(directory, rec: ProbeRecord, mode: int = 0o644) -> str:
    path = directory / rec.file_name
    path.write_bytes(encode(rec))
    path.chmod(mode)
    return rec.file_name


def source(directory, **kwargs) -> ProbeDirectorySource:
    kwargs.setdefault("gpus", GpuLookup(lambda: TABLE))
    return ProbeDirectorySource(directory, clock=lambda: NOW, **kwargs)


def collect(src) -> dict:
    """{(name, labels as a dict's items): value}"""
    return {(s.name, tuple(s.labels)): s.value for s in src.collect()}


def allocator(m: dict) -> dict:
    return {k: v for k, v in m.items() if k[0].startswith("torch_cuda_")}


def files(m: dict) -> dict[str, float]:
    return {k[1][0][1]: v for k, v in m.items() if k[0] == "exporter_torch_probe_files"}


def labels_of(m: dict) -> set[tuple]:
    return {k[1] for k in allocator(m)}


def test_each_live_process_is_exported_on_nvmls_gpu_with_its_identity(tmp_path):
    write(tmp_path, record())
    two = (DeviceReading(0, U1, stats(1, 2), 0), DeviceReading(1, U0, stats(3, 4, None), 1))
    write(tmp_path, record(os.getppid(), process="python3", devices=two))
    m = collect(source(tmp_path))
    me, parent = str(os.getpid()), str(os.getppid())
    assert labels_of(m) == {
        (("gpu", "2"), ("uuid", f"GPU-{U0}"), ("pid", me), ("process", "VLLM::Worker")),
        (("gpu", "5"), ("uuid", f"GPU-{U1}"), ("pid", parent), ("process", "python3")),
        (("gpu", "2"), ("uuid", f"GPU-{U0}"), ("pid", parent), ("process", "python3")),
    }
    mine = (("gpu", "2"), ("uuid", f"GPU-{U0}"), ("pid", me), ("process", "VLLM::Worker"))
    assert m[("torch_cuda_memory_allocated_bytes", mine)] == 100
    assert m[("torch_cuda_fragmentation_ratio", mine)] == 50 / 400
    assert m[("torch_cuda_alloc_retries_total", mine)] == 1
    theirs = (("gpu", "2"), ("uuid", f"GPU-{U0}"), ("pid", parent), ("process", "python3"))
    assert ("torch_cuda_memory_inactive_split_bytes", theirs) not in m  # not reported
    assert files(m) == {"live": 2, "stale": 0, "refused": 0, "corrupt": 0}


def test_an_exited_process_is_dropped_and_its_files_removed(tmp_path, exited_pid, caplog):
    gone = record(exited_pid, started=12345)
    name = write(tmp_path, gone)
    (tmp_path / f".{name}.tmp").write_bytes(b"half a wr")  # its write died half way
    write(tmp_path, record())
    with caplog.at_level(logging.INFO):
        m = collect(source(tmp_path))
    assert {dict(lb)["pid"] for lb in labels_of(m)} == {str(os.getpid())}
    assert sorted(p.name for p in tmp_path.iterdir()) == [record().file_name]
    assert f"(pid {exited_pid}) exited" in caplog.text
    assert files(m)["live"] == 1 and files(m)["stale"] == 0


def test_a_reused_pid_is_not_the_process_that_wrote_the_file(tmp_path):
    write(tmp_path, record(started=procfs.start_time() + 1))  # this pid, another start
    assert allocator(collect(source(tmp_path))) == {}
    assert list(tmp_path.iterdir()) == []


def test_a_zombie_has_exited(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while procfs.alive(proc.pid, None):
            os.sched_yield()
        write(tmp_path, record(proc.pid, started=procfs.start_time(proc.pid)))
        assert allocator(collect(source(tmp_path))) == {}
    finally:
        proc.wait()


def test_a_process_in_another_pid_namespace_lives_until_it_stops_writing(tmp_path):
    # a sidecar without shareProcessNamespace: its pids mean nothing here (this one is dead)
    fresh = record(999_999, namespace=OTHER_NAMESPACE, started=1, timestamp=NOW - 4.9)
    write(tmp_path, fresh)
    assert len(allocator(collect(source(tmp_path)))) == 6
    stale = record(999_999, namespace=OTHER_NAMESPACE, started=1, timestamp=NOW - 5.1)
    write(tmp_path, stale)  # 3 intervals of 1 s + 2 s of slack
    assert allocator(collect(source(tmp_path))) == {}
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_file_skips_that_process_with_one_warning(tmp_path, caplog):
    write(tmp_path, record())
    torn = tmp_path / file_name(os.getppid(), procfs.pid_namespace())
    torn.write_bytes(encode(record(os.getppid()))[:57])
    torn.chmod(0o644)
    src = source(tmp_path)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            m = collect(src)
    assert {dict(lb)["pid"] for lb in labels_of(m)} == {str(os.getpid())}
    assert files(m) == {"live": 1, "stale": 0, "refused": 0, "corrupt": 1}
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and torn.name in said[0] and "not a JSON document" in said[0]
    write(tmp_path, record(os.getppid()))  # the probe's next write mends it
    assert len(labels_of(collect(src))) == 2


def test_a_future_timestamp_is_not_believed(tmp_path):
    write(tmp_path, record(timestamp=NOW + 60))
    m = collect(source(tmp_path))
    assert allocator(m) == {} and files(m)["corrupt"] == 1


def plant(tmp_path, how: str) -> None:
    rec = record(os.getppid())
    path = tmp_path / rec.file_name
    if how == "symlink":
        target = tmp_path / "elsewhere"
        target.mkdir()
        (target / "real").write_bytes(encode(rec))
        path.symlink_to(target / "real")
    elif how == "fifo":
        os.mkfifo(path)  # opening it must not block the collection
    elif how == "hard link":
        write(tmp_path, rec)
        os.link(path, tmp_path / "copy")
    elif how == "big":
        path.write_bytes(encode(rec) + b" " * (1 << 20))
        path.chmod(0o644)
    else:
        write(tmp_path, rec, 0o644)
        if how == "other owner":
            os.chown(path, 12345, 12345)
        elif how == "group-writable":
            path.chmod(0o664)
        elif how == "world-writable":
            path.chmod(0o646)


@pytest.mark.parametrize(
    "how,why",
    [
        ("other owner", "owned by uid 12345, not a trusted writer"),
        ("group-writable", "writable by group or others (mode 664)"),
        ("world-writable", "writable by group or others (mode 646)"),
        ("symlink", "a symbolic link"),
        ("fifo", "not a regular file"),
        ("hard link", "other hard links"),
        ("big", "larger than 1048576 bytes"),
    ],
)
def test_a_file_the_probe_did_not_write_is_refused_and_left_alone(tmp_path, caplog, how, why):
    write(tmp_path, record())
    plant(tmp_path, how)
    before = sorted(p.name for p in tmp_path.iterdir())
    src = source(tmp_path)
    with caplog.at_level(logging.WARNING):
        collect(src)
        m = collect(src)
    assert {dict(lb)["pid"] for lb in labels_of(m)} == {str(os.getpid())}
    assert files(m)["refused"] == 1 and files(m)["live"] == 1
    assert [r.getMessage() for r in caplog.records if why in r.getMessage()], caplog.text
    assert len(caplog.records) == 1  # once per file
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # not ours to remove


def test_a_trusted_uid_is_read(tmp_path):
    plant(tmp_path, "other owner")
    m = collect(source(tmp_path, trusted_uids=[12345]))
    assert {dict(lb)["pid"] for lb in labels_of(m)} == {str(os.getppid())}


def test_an_old_file_of_another_user_is_not_removed(tmp_path):
    rec = record(999_999, namespace=OTHER_NAMESPACE, started=1, timestamp=NOW - 3600)
    path = tmp_path / write(tmp_path, rec)
    os.chown(path, 12345, 12345)
    collect(source(tmp_path))
    assert path.exists()


def test_two_containers_same_pid_and_name_on_one_gpu_the_newer_is_kept(tmp_path):
    older = record(7, namespace=OTHER_NAMESPACE, started=1, timestamp=NOW - 2)
    newer = record(7, namespace=2, started=1, timestamp=NOW - 1)
    write(tmp_path, older)
    dev = (DeviceReading(0, U0, stats(999, 1000), 0),)
    write(tmp_path, ProbeRecord(**{**newer.__dict__, "devices": dev}))
    m = collect(source(tmp_path))  # one series, not a duplicate the sampler would refuse
    assert [v for k, v in m.items() if k[0] == "torch_cuda_memory_allocated_bytes"] == [999]


def test_other_names_and_recent_temporary_files_are_left_alone(tmp_path):
    (tmp_path / "README").write_text("not a probe's")
    (tmp_path / ".1-2.json.tmp").write_text("a write in progress")
    m = collect(source(tmp_path))
    assert allocator(m) == {} and sum(files(m).values()) == 0
    assert len(list(tmp_path.iterdir())) == 2


def test_a_missing_directory_marks_the_source_unavailable(tmp_path):
    with pytest.raises(SourceUnavailable, match="does not exist"):
        source(tmp_path / "nope").collect()


def test_an_unchanged_file_is_not_parsed_again(tmp_path, monkeypatch):
    write(tmp_path, record())
    src = source(tmp_path)
    first = collect(src)
    import exporter.sources.torch_probe as module

    monkeypatch.setattr(module, "decode", lambda data: pytest.fail("parsed again"))
    assert collect(src) == first


def test_the_gpu_lookup_maps_torch_uuids_and_mig_devices_and_falls_back():
    calls = []
    table = {
        f"GPU-{U0}": ("2", f"GPU-{U0}"),
        "MIG-aaaaaaaa-0001-4000-8000-000000000001": ("2", f"GPU-{U0}"),
    }
    clock = [0.0]

    def load():
        calls.append(clock[0])
        return dict(table)

    gpus = GpuLookup(load, refresh_after=60, clock=lambda: clock[0])
    assert gpus.find(DeviceReading(0, U0, {}, 0)) == ("2", f"GPU-{U0}")
    mig = DeviceReading(0, "aaaaaaaa-0001-4000-8000-000000000001", {}, 0)
    assert gpus.find(mig) == ("2", f"GPU-{U0}")  # a MIG device is on its GPU
    unknown = DeviceReading(1, U1, {}, 6)
    assert gpus.find(unknown) == ("6", f"GPU-{U1}")  # CUDA_VISIBLE_DEVICES' index
    assert gpus.find(DeviceReading(1, U1, {}, None)) == ("1", f"GPU-{U1}")  # CUDA's ordinal
    assert len(calls) == 1  # NVML is not asked again for every unknown device...
    clock[0] = 61.0
    table[f"GPU-{U1}"] = ("4", f"GPU-{U1}")
    assert gpus.find(unknown) == ("4", f"GPU-{U1}")  # ...but after a minute
    assert len(calls) == 2


def test_the_nvml_table_lists_gpus_and_their_mig_devices(fake_nvml):
    fake_nvml.configure("gpus 4\ngpu 3 mig 2\n")
    table = nvml_gpu_table()
    gpu3 = "GPU-fa4e0003-0000-4000-8000-000000000003"
    assert table["GPU-fa4e0000-0000-4000-8000-000000000000"] == (
        "0",
        "GPU-fa4e0000-0000-4000-8000-000000000000",
    )
    migs = {k: v for k, v in table.items() if k.startswith("MIG-")}
    assert len(migs) == 2 and set(migs.values()) == {("3", gpu3)}
    assert len(table) == 6


def test_without_nvml_the_table_is_empty():
    assert nvml_gpu_table() == {}  # this machine has no driver


def test_past_the_file_limit_the_rest_are_refused_and_said_once(tmp_path, monkeypatch, caplog):
    import exporter.sources.torch_probe as module

    monkeypatch.setattr(module, "MAX_FILES", 2)
    for pid in (os.getpid(), os.getppid(), 1):
        write(tmp_path, record(pid, namespace=OTHER_NAMESPACE, started=1))
    src = source(tmp_path)
    with caplog.at_level(logging.WARNING):
        collect(src)
        m = collect(src)
    assert files(m) == {"live": 2, "stale": 0, "refused": 1, "corrupt": 0}
    assert len(labels_of(m)) == 2
    assert len(caplog.records) == 1 and "more than 2 files in" in caplog.text
