"""The exporter as a real process on the fake DCGM bindings (DCGM_BINDINGS_PATH), and without."""

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from exporter.sources.dcgm import PROVIDES
from tests.conftest import REPO, run_exporter, series
from tests.fake_dcgm import ControlFile, subprocess_env
from tests.test_e2e_simulated import promtool, wait_until
from tests.test_nvml_e2e import has, one

pytestmark = pytest.mark.e2e

PROFILING = (
    "gpu_sm_active_ratio",
    "gpu_sm_occupancy_ratio",
    "gpu_tensor_active_ratio",
    "gpu_dram_active_ratio",
    "gpu_pcie_transmit_bytes_total",
    "gpu_pcie_receive_bytes_total",
)


@pytest.fixture
def fake_env(tmp_path):
    config = tmp_path / "fake.cfg"
    control = ControlFile(tmp_path / "control")

    def env(text: str) -> tuple[dict[str, str], ControlFile]:
        config.write_text(text)
        return subprocess_env(config, control.path), control

    return env


@contextmanager
def tcp_listener() -> Iterator[str]:
    """Something that accepts TCP connections on 127.0.0.1, as a hostengine would."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()


def test_auto_picks_dcgm_when_a_hostengine_answers_and_the_scrape_passes_promtool(fake_env):
    env, _ = fake_env("gpus 4\ngpu 2 blank 140 not_supported\n")
    with tcp_listener() as address:
        args = ["--backend=auto", f"--dcgm.address={address}", "--collect.interval=0.2"]
        with run_exporter(*args, env=env) as exp:
            m = wait_until(lambda: (m := exp.metrics()) and has(m, 1, "gpu_up", gpu="3") and m)
            status, body = exp.get("/metrics")
    assert status == 200
    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0 and lint.stdout == lint.stderr == "", lint.stdout + lint.stderr
    assert one(m, "gpu_backend_up", backend="dcgm") == 1
    assert one(m, "exporter_source_up", source="dcgm") == 1
    assert {dict(k[1])["backend"] for k in series(m, "gpu_info")} == {"dcgm"}
    for gpu in ("0", "1", "3"):
        assert {k[0] for k in m if dict(k[1]).get("gpu") == gpu} == set(PROVIDES), gpu
    assert not series(m, "gpu_temperature_celsius", gpu="2", sensor="memory")  # blank: absent
    assert "9223372036854775" not in body  # no sentinel ever reaches the exposition


def test_auto_passes_dcgm_over_when_the_bindings_are_missing_and_says_why():
    env = {"DCGM_BINDINGS_PATH": "/nonexistent"}
    with tcp_listener() as address:
        args = ["--backend=auto", f"--dcgm.address={address}"]
        with run_exporter(*args, env=env) as exp:
            m = exp.metrics()
            exp.process.terminate()
            out, _ = exp.process.communicate(timeout=10)
    assert one(m, "gpu_backend_up", backend="none") == 0  # no NVML here either
    why = [line for line in out.splitlines() if f"a hostengine answers at {address}" in line]
    assert len(why) == 1 and "pydcgm) not found" in why[0] and "DCGM_BINDINGS_PATH" in why[0]


def test_a_hostengine_that_stops_is_a_down_source_and_it_reconnects(fake_env):
    env, control = fake_env("gpus 2\n")
    with run_exporter("--backend=dcgm", "--collect.interval=0.2", env=env) as exp:
        wait_until(lambda: has(exp.metrics(), 1, "exporter_source_up", source="dcgm"))
        control.send("hostengine down")
        down = wait_until(
            lambda: (m := exp.metrics()) and has(m, 0, "exporter_source_up", source="dcgm") and m
        )
        assert one(down, "gpu_backend_up", backend="dcgm") == 0
        # --collect.keep-series (3) missed collections keep the last series, then they end
        gone = wait_until(lambda: (m := exp.metrics()) and not series(m, "gpu_up") and m)
        assert one(gone, "exporter_source_up", source="dcgm") == 0
        assert sum(series(gone, "exporter_collect_errors_total", source="dcgm").values()) > 3
        assert exp.get("/healthz")[0] == 200  # the exporter keeps serving
        control.send("hostengine up")
        back = wait_until(
            lambda: (m := exp.metrics()) and has(m, 1, "exporter_source_up", source="dcgm") and m,
            timeout=15,
        )
        assert len(series(back, "gpu_up")) == 2
        assert all(v == 1 for v in series(back, "gpu_up").values())
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    assert len([line for line in out.splitlines() if "lost the connection to" in line]) == 1
    assert "reconnected to hostengine localhost:5555" in out


def test_a_profiling_module_that_refuses_leaves_the_source_up_and_says_why_once(fake_env):
    env, _ = fake_env("gpus 2\nprofiling requires_root\n")
    with run_exporter("--backend=dcgm", "--collect.interval=0.2", env=env) as exp:
        m = wait_until(lambda: (m := exp.metrics()) and has(m, 1, "gpu_up", gpu="1") and m)
        time.sleep(1.0)  # several cycles: the refusal is said once, not once per cycle
        later = exp.metrics()
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    for snapshot in (m, later):
        assert one(snapshot, "exporter_source_up", source="dcgm") == 1
        for name in PROFILING:
            assert not series(snapshot, name), name
    said = [line for line in out.splitlines() if "DCGM profiling unavailable" in line]
    assert len(said) == 1 and "needs the hostengine to run as root" in said[0]


def test_without_the_bindings_the_source_is_down_and_says_where_it_looked():
    env = {"DCGM_BINDINGS_PATH": "/nonexistent"}
    with run_exporter("--backend=dcgm", "--collect.interval=0.2", env=env) as exp:
        m = wait_until(
            lambda: (
                (m := exp.metrics())
                and one(m, "exporter_collect_errors_total", source="dcgm", reason="unavailable")
                >= 2
                and m
            )
        )
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    assert one(m, "exporter_source_up", source="dcgm") == 0
    assert not series(m, "gpu_up")
    why = [line for line in out.splitlines() if "(pydcgm) not found" in line]
    assert len(why) == 1
    assert "/usr/share/datacenter-gpu-manager-4/bindings/python3" in why[0]


def test_gpu_check_with_dcgm_passes_on_the_fake_and_fails_on_a_missing_family(fake_env):
    def check(config: str) -> subprocess.CompletedProcess:
        env, _ = fake_env(config)
        return subprocess.run(
            [
                "scripts/gpu-check",
                "--backend=dcgm",
                "--seconds=1",
                "--scrapes=5",
                "--interval=200ms",
            ],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = check("gpus 2\n")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for row in ("gpu_sm_active_ratio", "gpu_tensor_active_ratio", "gpu_pcie_receive_bytes_total"):
        assert f"\n{row} " in ok.stdout, row
    assert "DCGM profiling module: serving" in ok.stdout
    assert "collect (dcgm)" in ok.stdout
    assert "OK: every expected family answered on 2 GPU(s)" in ok.stdout

    refused = check("gpus 1\nprofiling in_use\n")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "DCGM profiling module: unavailable: another profiler holds" in refused.stdout
    missing = "FAIL: GPU 0 (NVIDIA H100 80GB HBM3) is missing: gpu_nvlink_transmit_bytes_total"
    assert missing in refused.stdout and "gpu_sm_active_ratio" in refused.stdout
