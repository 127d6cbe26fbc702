"""The exporter as a real process on the fake NVML (LD_LIBRARY_PATH), and on no NVML at all."""

import os
import re
import subprocess
import time

import pytest

from tests.conftest import REPO, run_exporter, series
from tests.fake_nvml import ControlFile, subprocess_env
from tests.test_e2e_simulated import promtool, wait_until

pytestmark = pytest.mark.e2e


def one(metrics: dict, name: str, **labels: str) -> float:
    found = series(metrics, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


def has(metrics: dict, value: float, name: str, **labels: str) -> bool:
    """True when exactly one series matches and has `value` (for wait_until predicates)."""
    found = series(metrics, name, **labels)
    return len(found) == 1 and next(iter(found.values())) == value


@pytest.fixture
def fake_env(tmp_path, fake_nvml_library):
    config = tmp_path / "fake.cfg"
    control = ControlFile(tmp_path / "control")

    def env(text: str) -> tuple[dict[str, str], ControlFile]:
        config.write_text(text)
        return subprocess_env(fake_nvml_library, config, control.path), control

    return env


def test_auto_finds_the_gpus_through_nvml_and_the_scrape_passes_promtool(fake_env):
    env, _ = fake_env("gpus 8\ngpu 3 mig 2\ngpu 0 process 4242 python3 1073741824\n")
    args = ["--backend=auto", "--dcgm.address=127.0.0.1:1", "--collect.interval=0.2"]
    with run_exporter(*args, "--collect.processes", env=env) as exp:
        m = wait_until(lambda: (m := exp.metrics()) and has(m, 1, "gpu_up", gpu="7") and m)
        status, body = exp.get("/metrics")
        ready = exp.get("/readyz")[0]
    assert status == 200 and ready == 200
    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0 and lint.stdout == lint.stderr == "", lint.stdout + lint.stderr
    assert one(m, "gpu_backend_up", backend="nvml") == 1
    assert one(m, "exporter_source_up", source="nvml") == 1
    assert {dict(k[1])["backend"] for k in series(m, "gpu_info")} == {"nvml"}
    assert all(v == 1 for v in series(m, "gpu_up").values()) and len(series(m, "gpu_up")) == 8
    assert len(series(m, "gpu_mig_info", gpu="3")) == 2
    assert one(m, "gpu_process_memory_used_bytes", gpu="0", pid="4242") == 1073741824


def test_a_gpu_lost_mid_run_is_gpu_up_0_and_comes_back_and_xids_are_counted(fake_env):
    env, control = fake_env("gpus 4\n")
    with run_exporter("--backend=nvml", "--collect.interval=0.2", env=env) as exp:
        control.send("gpu 1 xid 79", "gpu 1 xid 79", "gpu 1 lost")
        lost = wait_until(lambda: (m := exp.metrics()) and has(m, 0, "gpu_up", gpu="1") and m)
        assert {k[0] for k in lost if dict(k[1]).get("gpu") == "1"} == {
            "gpu_info",
            "gpu_up",
            "gpu_xid_errors_total",
        }
        assert all(one(lost, "gpu_up", gpu=g) == 1 for g in ("0", "2", "3"))
        assert exp.get("/readyz")[0] == 200  # a lost GPU is a GPU state, not a stale source
        wait_until(lambda: has(exp.metrics(), 2, "gpu_xid_errors_total", gpu="1", xid="79"))
        control.send("gpu 1 recover")
        back = wait_until(
            lambda: (m := exp.metrics()) and has(m, 1, "gpu_up", gpu="1") and m, timeout=15
        )
        assert one(back, "gpu_power_watts", gpu="1") > 0
        assert one(back, "gpu_xid_errors_total", gpu="1", xid="79") == 2  # kept over re-init
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    lost_lines = [line for line in out.splitlines() if "GPU 1 (" in line and " lost:" in line]
    assert len(lost_lines) == 1, out
    assert "answers again" in out


def test_without_nvml_the_exporter_runs_with_the_source_down_and_says_why_once():
    # This machine and CI have no NVIDIA driver: libnvidia-ml.so.1 cannot be loaded.
    with run_exporter("--backend=nvml", "--collect.interval=0.2") as exp:
        first = exp.metrics()
        time.sleep(1.2)  # several cycles, and past the first retry (1 s)
        later = exp.metrics()
        assert exp.get("/healthz")[0] == 200
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    for m in (first, later):
        assert one(m, "exporter_source_up", source="nvml") == 0
        assert one(m, "gpu_backend_up", backend="nvml") == 0
        assert not series(m, "gpu_up")
    errors = "exporter_collect_errors_total"
    assert one(later, errors, source="nvml", reason="unavailable") > one(
        first, errors, source="nvml", reason="unavailable"
    )
    why = [line for line in out.splitlines() if "libnvidia-ml.so.1 not found" in line]
    assert len(why) == 1, out


def test_a_driver_that_is_not_loaded_is_reported_and_nvml_comes_up_when_it_is(fake_env):
    env, control = fake_env("gpus 2\ndriver_loaded 0\n")
    with run_exporter("--backend=nvml", "--collect.interval=0.2", env=env) as exp:
        assert one(exp.metrics(), "exporter_source_up", source="nvml") == 0
        control.send("driver_loaded 1")
        wait_until(lambda: has(exp.metrics(), 1, "exporter_source_up", source="nvml"), timeout=15)
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    assert len([line for line in out.splitlines() if "driver is not loaded" in line]) == 1


def test_gpu_check_passes_on_the_fake_h100s_and_prints_every_family(fake_env):
    # GPU 1 plays a driver before R565: no recovery action, which gpu-check lists, not requires.
    env, _ = fake_env(
        "gpus 2\ngpu 1 unsupported video_clock\ngpu 1 recovery_action unsupported\n"
        "gpu 0 recovery_action 1\n"
    )
    out = subprocess.run(
        ["scripts/gpu-check", "--seconds=1.5", "--scrapes=10", "--interval=0.2"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for row in (
        "gpu_utilization_ratio",
        "gpu_memory_reserved_bytes",
        "gpu_temperature_celsius{sensor=memory}",
        "gpu_clock_max_hertz{clock=sm}",
        "gpu_nvlink_link_up",
        "gpu_nvlink_transmit_bytes_total",
        "gpu_ecc_errors_total{type=uncorrected}",
        "gpu_row_remap_failure",
        "gpu_xid_errors_total",
    ):
        assert f"\n{row} " in text, row
    assert "18/18 up" in text
    assert (
        "GPU 1: gpu_clock_hertz{clock=video}, gpu_clock_max_hertz{clock=video}, "
        "gpu_recovery_action\n" in text
    )
    assert re.search(r"\ngpu_recovery_action +1 \(GPU reset\) +-\n", text), text
    assert "scrape /metrics" in text and "collect (nvml)" in text
    assert "OK: every expected family answered on 2 GPU(s)" in text


def test_gpu_check_fails_when_an_h100_does_not_answer_a_family_it_should(fake_env):
    env, _ = fake_env("gpus 2\ngpu 0 unsupported power,remapped_rows\n")
    out = subprocess.run(
        ["scripts/gpu-check", "--seconds=0.5", "--scrapes=3", "--interval=0.2"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL: GPU 0 (NVIDIA H100 80GB HBM3) is missing: gpu_power_watts, gpu_remapped_rows" in (
        out.stdout
    )
    assert "FAIL: GPU 1" not in out.stdout
