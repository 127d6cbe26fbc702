"""The allocator probe inside a serving process: what it writes, when, and how (on the fake
CUDA allocator of tests/fake_cuda.py, read through the real TorchCudaStats)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from exporter.probe import ENV_DIR, procfs, start_from_env
from exporter.probe.record import FORMAT, CorruptRecord, ProbeRecord, decode, encode
from exporter.probe.stats import (
    ALLOCATED,
    INACTIVE_SPLIT,
    KEPT,
    DeviceReading,
    TorchCudaStats,
    physical_indices,
)
from exporter.probe.writer import Probe
from tests.conftest import REPO
from tests.fake_cuda import GIB, FakeCuda, FakeDevice

U0 = "5a1e7d0c-3b7e-4f4c-9d55-0123456789ab"
U1 = "9f0e1d2c-aaaa-bbbb-cccc-ddddeeeeffff"


def two_gpus(**kwargs) -> FakeCuda:
    return FakeCuda(
        [
            FakeDevice(U0, allocated=6 * GIB, reserved=10 * GIB, inactive_split=GIB, ooms=2),
            FakeDevice(U1, allocations=0),  # visible to the process, never allocated on
        ],
        **kwargs,
    )


def probe(tmp_path, cuda: FakeCuda, environ=None, **kwargs) -> Probe:
    environ = environ or {}
    reader = TorchCudaStats(environ, cuda=cuda)
    return Probe(tmp_path, 1.0, reader=reader, environ=environ, clock=lambda: 1000.5, **kwargs)


def test_a_write_holds_the_kept_figures_of_each_used_device_and_who_wrote_them(tmp_path):
    p = probe(tmp_path, two_gpus(), {"CUDA_VISIBLE_DEVICES": "4,5"})
    assert p.write_once()
    record = decode(p.path.read_bytes())
    assert record == ProbeRecord(
        pid=os.getpid(),
        pid_namespace=procfs.pid_namespace(),
        start_time=procfs.start_time(),
        process=procfs.process_name(),
        timestamp=1000.5,
        interval=1.0,
        expandable_segments=False,
        devices=(record.devices[0],),
    )
    (device,) = record.devices  # the device never allocated on is left out
    assert (device.index, device.uuid, device.physical_index) == (0, U0, 4)
    assert set(device.stats) == set(KEPT)  # torch's keys, only those the exporter reads
    assert device.stats[ALLOCATED] == 6 * GIB and device.stats["num_ooms"] == 2
    assert p.path.name == f"{os.getpid()}-{procfs.pid_namespace()}.json"
    raw = json.loads(p.path.read_bytes())
    assert raw["format"] == FORMAT and raw["devices"][0]["uuid"] == U0  # torch's spelling


def test_the_file_is_replaced_whole_readable_by_all_writable_by_its_owner_only(tmp_path):
    old = os.umask(0o077)  # a umask must not make the file unreadable for the exporter
    try:
        p = probe(tmp_path, two_gpus())
        assert p.write_once()
        first_inode = p.path.stat().st_ino
        assert p.write_once()
    finally:
        os.umask(old)
    st = p.path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_nlink == 1
    assert st.st_ino != first_inode  # a new file renamed over the old one, never rewritten
    assert [f.name for f in tmp_path.iterdir()] == [p.path.name]  # no temporary file left


def test_nothing_is_written_before_the_process_has_a_cuda_context(tmp_path):
    cuda = two_gpus(initialized=False)
    p = probe(tmp_path, cuda)
    assert not p.write_once()
    assert not p.path.exists()
    assert cuda.stats_calls == 0  # and nothing was asked that would create the context
    cuda.init()
    assert p.write_once()


def test_torch_cuda_stats_never_imports_torch_for_a_process_that_did_not():
    code = textwrap.dedent(
        """
        import sys
        from exporter.probe.stats import TorchCudaStats
        reader = TorchCudaStats()
        assert not reader.initialized() and reader.devices() == []
        assert "torch" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)


def test_on_this_cpu_machine_the_real_reader_finds_no_context(tmp_path):
    import torch

    p = Probe(tmp_path, 1.0)  # torch's own torch.cuda
    assert not p.write_once()
    assert not torch.cuda.is_initialized()


def test_with_expandable_segments_the_inactive_split_stays_absent(tmp_path):
    environ = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    p = probe(tmp_path, two_gpus(expandable_segments=True), environ)
    assert p.write_once()
    record = decode(p.path.read_bytes())
    assert record.expandable_segments
    assert INACTIVE_SPLIT not in record.devices[0].stats


@pytest.mark.parametrize(
    "visible,expected",
    [(None, [0, 1, 2]), ("3,1,0", [3, 1, 0]), ("GPU-aaaa,2", [None, 2, None]), ("", [None] * 3)],
)
def test_the_node_index_a_process_can_tell_from_cuda_visible_devices(visible, expected):
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert physical_indices(3, environ) == expected


def test_a_failing_write_never_raises_and_is_logged_once_until_it_recovers(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    p = probe(blocker, two_gpus())
    with caplog.at_level(logging.WARNING, logger="gpu_inference_exporter.probe"):
        assert not p.write_once()
        assert not p.write_once()
    assert len(caplog.records) == 1 and "cannot write" in caplog.records[0].getMessage()
    blocker.unlink()
    blocker.mkdir()
    assert p.write_once()


def test_a_reader_that_raises_does_not_reach_the_serving_process(tmp_path):
    class Broken:
        def initialized(self):
            return True

        def devices(self):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    p = Probe(tmp_path, 1.0, reader=Broken())
    assert not p.write_once()


def test_the_thread_writes_every_interval_and_stop_removes_the_file(tmp_path):
    cuda = two_gpus()
    p = Probe(tmp_path, 0.05, reader=TorchCudaStats({}, cuda=cuda)).start()
    try:
        for _ in range(200):
            if cuda.stats_calls >= 6:  # two devices a write: three writes
                break
            p._stopping.wait(0.02)
        assert cuda.stats_calls >= 6 and p.path.exists()
    finally:
        p.stop()
    assert not p.running and list(tmp_path.iterdir()) == []


def test_an_interval_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="probe interval"):
        Probe(tmp_path, 0)


def round_trip() -> bytes:
    device = DeviceReading(1, U0, {ALLOCATED: 5, "num_ooms": 0}, None)
    record = ProbeRecord(7, None, None, "python3", 10.0, 5.0, False, (device,))
    return encode(record)


def test_a_record_reads_back_as_written():
    record = decode(round_trip())
    assert record.pid == 7 and record.devices[0].stats == {ALLOCATED: 5, "num_ooms": 0}
    assert record.devices[0].physical_index is None


def mutate(**changes) -> bytes:
    obj = json.loads(round_trip())
    for key, value in changes.items():
        if key.startswith("device_"):
            obj["devices"][0][key.removeprefix("device_")] = value
        else:
            obj[key] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "data,why",
    [
        (round_trip()[:40], "not a JSON document"),
        (b"\xff\xfe", "not a JSON document"),
        (b"[1, 2]", "not a JSON object"),
        (mutate(format=2), "format 2: this exporter reads format 1"),
        (mutate(pid=0), "pid must be a whole number"),
        (mutate(pid=True), "pid must be a whole number"),
        (mutate(timestamp="now"), "timestamp must be a number"),
        (mutate(interval=0), "interval must be in"),
        (mutate(devices=[{}] * 65), "devices must be a list of at most 64"),
        (mutate(device_uuid="../../etc"), r"devices\[0\].uuid is not a GPU UUID"),
        (mutate(device_stats={ALLOCATED: -1}), "must be a whole number of at least 0"),
        (mutate(device_stats={ALLOCATED: 1.5}), "must be a whole number"),
        (mutate(process=["x"]), "process must be a string"),
    ],
)
def test_a_record_that_is_not_a_probes_says_why_without_echoing_it(data, why):
    with pytest.raises(CorruptRecord, match=why) as info:
        decode(data)
    assert "etc" not in str(info.value)


def test_a_process_name_with_control_characters_is_cleaned_and_cut():
    assert decode(mutate(process="vllm\x1b[31m\n" + "x" * 100)).process == "vllm[31m" + "x" * 56


def test_the_vllm_plugin_is_declared_and_starts_the_probe_from_the_environment(tmp_path):
    ours = [e for e in entry_points(group="vllm.general_plugins") if e.value.startswith("exp")]
    assert [e.value for e in ours] == ["exporter.probe.vllm_plugin:register"]
    # What vLLM does in each process it starts: load the entry point and call it. Then fork a
    # child, as vLLM's fork start method does (the child does not load plugins again): it
    # writes a file of its own. The parent removes its file at exit; the child's os._exit
    # leaves its file for the exporter to clean.
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from importlib.metadata import entry_points
        plugins = entry_points(group="vllm.general_plugins")
        (ep,) = [e for e in plugins if e.name == {ours[0].name!r}]
        ep.load()()
        heavy = {{"aiohttp", "prometheus_client", "torch", "pynvml", "yaml"}}
        loaded = {{m.split(".")[0] for m in sys.modules}} & heavy
        server = ("exporter.sources", "exporter.server", "exporter.sampler")
        loaded |= {{m for m in sys.modules if m.startswith(server)}}
        assert not loaded, loaded
        import exporter.probe.writer as writer
        from exporter.probe.stats import TorchCudaStats
        from tests.fake_cuda import FakeCuda
        writer._current.reader = TorchCudaStats({{}}, cuda=FakeCuda([]))  # a CUDA context
        pid = os.fork()
        if pid == 0:
            for _ in range(250):
                if any(f.startswith(f"{{os.getpid()}}-") for f in os.listdir(sys.argv[1])):
                    os._exit(0)
                time.sleep(0.02)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the forked child wrote no file"
        for _ in range(250):
            if writer._current.path.exists():
                break
            time.sleep(0.02)
        assert writer._current.path.exists() and writer._current.interval == 0.05
        print(pid)
        """
    )
    env = {**os.environ, "GIE_TORCH_PROBE_DIR": str(tmp_path), "GIE_TORCH_PROBE_INTERVAL": "50ms"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    child = int(done.stdout.split()[-1])
    assert [f.name.split("-")[0] for f in tmp_path.iterdir()] == [str(child)]


def test_without_the_variable_the_plugin_does_nothing_and_a_bad_interval_is_said(caplog):
    assert start_from_env({}) is None
    with caplog.at_level(logging.WARNING, logger="gpu_inference_exporter.probe"):
        bad = {"GIE_TORCH_PROBE_DIR": "/nonexistent", "GIE_TORCH_PROBE_INTERVAL": "soon"}
        assert start_from_env(bad) is None
    assert "GIE_TORCH_PROBE_INTERVAL" in caplog.text


def test_the_probe_and_the_exporter_read_the_directory_from_one_variable():
    from exporter.cli import env_name

    assert env_name("--torch.probe-dir") == ENV_DIR == "GIE_TORCH_PROBE_DIR"


def test_a_process_short_name_comes_from_proc_and_the_nvml_source_falls_back_to_it(monkeypatch):
    import pynvml

    from exporter.sources.nvml import processes

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        expected = Path(f"/proc/{child.pid}/comm").read_text(encoding="utf-8").strip()
        assert expected and procfs.comm(child.pid) == expected

        def no_name(pid: int) -> str:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

        monkeypatch.setattr(pynvml, "nvmlSystemGetProcessName", no_name)
        assert processes.process_name(child.pid) == expected  # NVML has none: /proc's
    finally:
        child.kill()
        child.wait()
    assert procfs.comm(child.pid) == "" and processes.process_name(child.pid) == ""
    assert procfs.process_name() == procfs.comm() != ""
