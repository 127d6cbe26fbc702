"""scripts/gpu-check's allocator-probe check on the CPU: the fake NVML for the GPUs and the fake
CUDA allocator (GIE_GPU_CHECK_FAKE_CUDA) in the probed process; the real check runs it in a
CUDA process on a GPU machine."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import REPO
from tests.fake_nvml import subprocess_env

pytestmark = pytest.mark.e2e

GIB = 2**30


def nvml_uuid(index: int) -> str:
    """The fake NVML's UUID of GPU `index`, as torch spells it (no "GPU-")."""
    return f"fa4e{index:04x}-0000-4000-8000-{index:012d}"


def gpu_check(tmp_path, fake_nvml_library, devices: list[dict]) -> subprocess.CompletedProcess:
    config = tmp_path / "fake.cfg"
    config.write_text("gpus 4\n")
    env = {**os.environ, **subprocess_env(fake_nvml_library, config)}
    env["GIE_GPU_CHECK_FAKE_CUDA"] = json.dumps({"devices": devices})
    cmd = ["scripts/gpu-check", "--seconds=0.5", "--scrapes=3", "--interval=0.2", "--probe=on"]
    cmd.append("--probe-interval=0.2")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_gpu_check_reads_the_probed_process_and_sees_it_go(tmp_path, fake_nvml_library):
    devices = [
        {"uuid": nvml_uuid(0), "allocated": 6 * GIB, "reserved": 10 * GIB,
         "inactive_split": GIB, "retries": 1, "ooms": 1},
        {"uuid": nvml_uuid(3), "allocated": GIB, "reserved": 2 * GIB, "inactive_split": 0},
    ]  # fmt: skip
    out = gpu_check(tmp_path, fake_nvml_library, devices)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "Allocator probe" in text and "a probe write with the fake CUDA allocator" in text
    assert f"GPU-{nvml_uuid(3)}: gpu 3, process" in text  # NVML's index, by UUID
    assert re.search(r"torch_cuda_memory_allocated_bytes +6144 MiB \(process 6144 MiB\)", text)
    assert re.search(r"torch_cuda_ooms_total +1 \(process 1\) +0 \(process 0\)", text), text
    assert re.search(r"killed pid \d+: series gone and file removed", text)


def test_gpu_check_fails_when_the_exporter_cannot_place_the_gpu(tmp_path, fake_nvml_library):
    stranger = "0badc0de-0000-4000-8000-000000000000"  # a GPU this NVML does not list
    devices = [{"uuid": stranger, "allocated": GIB, "reserved": GIB, "ooms": 1}]
    out = gpu_check(tmp_path, fake_nvml_library, devices)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"FAIL: GPU-{stranger} is not a GPU the exporter's NVML lists" in out.stdout
