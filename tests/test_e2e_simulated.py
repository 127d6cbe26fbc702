"""The exporter as a real process with the simulated fleet: what an SRE's Prometheus would see."""

import shutil
import signal
import subprocess
import time

import pytest

from exporter.catalog import FAMILIES, Kind
from tests.conftest import parse_metrics, run_exporter, series

pytestmark = pytest.mark.e2e

EVERY_SCENARIO = [
    "thermal_throttle:gpu=0",
    "power_cap:gpu=1",
    "memory_leak:gpu=2,ramp=5",
    "fragmentation:gpu=3,ramp=5",
    "gpu_lost:gpu=4",
    "xid:gpu=5,code=13",
    "nvlink_down:gpu=6,link=2",
    "ecc_uncorrectable:gpu=7",
    "row_remap_pending:gpu=6",
    "idle:gpu=5",
    "recovery_action:gpu=3,action=reboot",
    "thermal_flap:gpu=0,period=2",
    "power_at_limit:gpu=1,period=2",
    "xid:gpu=all,code=95",
]


def wait_until(predicate, timeout=20.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval)


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: scripts/test installs Debian's prometheus package"
    return path


def test_metrics_pass_promtool_lint_with_every_scenario_active():
    args = ["--backend=simulated", "--collect.interval=0.2"]
    args += [f"--simulate.scenario={s}" for s in EVERY_SCENARIO]
    with run_exporter(*args) as exp:
        time.sleep(1.0)  # a few cycles, so counters and scenarios have moved
        status, body = exp.get("/metrics")
    assert status == 200
    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout == "" and lint.stderr == ""
    m = parse_metrics(body)
    assert series(m, "gpu_up", gpu="4") and list(series(m, "gpu_up", gpu="4").values()) == [0]
    assert series(m, "gpu_nvlink_link_up", gpu="6", link="2")
    assert list(series(m, "gpu_nvlink_link_up", gpu="6", link="2").values()) == [0]
    actions = {dict(k[1])["gpu"]: v for k, v in m.items() if k[0] == "gpu_recovery_action"}
    assert actions == {"0": 0, "1": 0, "2": 0, "3": 2, "5": 0, "6": 0, "7": 1}  # 4 is lost
    assert set(series(m, "gpu_xid_errors_total", xid="95").values()) == {1}
    assert len(series(m, "gpu_xid_errors_total", xid="95")) == 8


def test_gpu_lost_takes_out_only_that_gpu_and_the_exporter_keeps_answering():
    args = ["--backend", "simulated", "--simulate.scenario", "gpu_lost:gpu=3,start=2"]
    with run_exporter(*args, "--collect.interval=0.25") as exp:
        before = exp.metrics()
        assert series(before, "gpu_up", gpu="3").popitem()[1] == 1
        after = wait_until(
            lambda: (m := exp.metrics()) and series(m, "gpu_up", gpu="3").popitem()[1] == 0 and m
        )
        time.sleep(0.6)
        later = exp.metrics()
        assert exp.get("/healthz")[0] == 200
        assert exp.get("/readyz")[0] == 200  # one lost GPU is a GPU state, not a stale source

    others = [str(i) for i in range(8) if i != 3]
    for gpu in others:
        assert series(later, "gpu_up", gpu=gpu).popitem()[1] == 1
        # fresh values: the energy counter of every other GPU keeps growing
        e1 = series(after, "gpu_energy_joules_total", gpu=gpu).popitem()[1]
        e2 = series(later, "gpu_energy_joules_total", gpu=gpu).popitem()[1]
        assert e2 > e1, f"gpu {gpu} stopped reporting"
    ts = "exporter_last_collect_timestamp_seconds"
    assert later[(ts, ())] > after[(ts, ())]
    lost = {k[0] for k in later if dict(k[1]).get("gpu") == "3"}
    assert lost == {"gpu_up", "gpu_info", "gpu_xid_errors_total"}
    assert series(later, "gpu_xid_errors_total", gpu="3", xid="79").popitem()[1] >= 1
    assert later[("exporter_source_up", (("source", "simulated"),))] == 1


def test_the_simulated_fleet_exports_every_catalog_family(tmp_path):
    # --collect.processes and --simulate.mig: the opt-in process and MIG families too;
    # --torch.probe-dir: the allocator probes' files (none here: the files gauge at 0).
    args = ("--backend=simulated", "--collect.interval=0.2", "--collect.processes")
    args += ("--simulate.mig=1", f"--torch.probe-dir={tmp_path}")
    pod = {"POD_NAME": "gie-0", "POD_NAMESPACE": "monitoring"}  # exporter_pod_info
    with run_exporter(*args, env=pod) as exp:
        time.sleep(0.5)
        m = exp.metrics()
    exported = {name for name, _ in m}
    for fam in FAMILIES.values():
        if fam.name.startswith("inference_"):
            continue  # produced by the inference harness, not by a GPU backend
        names = {fam.name}
        if fam.kind is Kind.HISTOGRAM:
            names = {f"{fam.name}_bucket", f"{fam.name}_sum", f"{fam.name}_count"}
        assert names <= exported, f"{fam.name} is not exported by the simulated fleet"
    gpus = {dict(labels)["gpu"] for name, labels in m if name == "gpu_info"}
    assert gpus == {str(i) for i in range(8)}
    assert all(dict(k[1])["backend"] == "simulated" for k in m if k[0] == "gpu_info")


def test_node_and_constant_labels_are_on_every_series_and_the_pod_on_one():
    env = {"NODE_NAME": "gpu-node-7", "POD_NAME": "llm-0", "POD_NAMESPACE": "serving"}
    with run_exporter("--backend=simulated", "--label=cluster=c1", env=env) as exp:
        m = exp.metrics()
    assert m
    for name, labels in m:
        assert {("node", "gpu-node-7"), ("cluster", "c1")} <= set(labels)
        if name != "exporter_pod_info":  # a rollout changes the pod: not on the GPUs' series
            assert not {"pod", "namespace"} & {k for k, _ in labels}
    assert (
        m[
            (
                "exporter_pod_info",
                (
                    ("cluster", "c1"),
                    ("namespace", "serving"),
                    ("node", "gpu-node-7"),
                    ("pod", "llm-0"),
                ),
            )
        ]
        == 1
    )
    with run_exporter(
        "--backend=simulated", "--identity.pod-labels", env=env
    ) as exp:  # the old behaviour, opted back in
        m = exp.metrics()
    assert all({("pod", "llm-0"), ("namespace", "serving")} <= set(labels) for _, labels in m)
    assert not [k for k in m if k[0] == "exporter_pod_info"]


def test_backend_none_exports_its_own_metrics_and_says_how_to_simulate():
    with run_exporter("--backend=none") as exp:
        m = exp.metrics()
        ready = exp.get("/readyz")[0]
        proc = exp.process
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert m[("gpu_backend_up", (("backend", "none"),))] == 0
    assert not [k for k in m if k[0] == "gpu_up"]
    assert ready == 200
    assert proc.returncode == 0
    assert "stopping" in out


def test_auto_never_picks_the_simulator_and_logs_one_clear_line():
    # This machine and CI have no GPU and no DCGM hostengine: auto must end up with none.
    with run_exporter("--backend=auto", "--dcgm.address=127.0.0.1:1") as exp:
        m = exp.metrics()
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    assert m[("gpu_backend_up", (("backend", "none"),))] == 0
    assert not [k for k in m if k[0] == "gpu_info"]
    hints = [line for line in out.splitlines() if "no GPU backend found" in line]
    assert len(hints) == 1 and "--backend simulated" in hints[0]


def test_json_logs_are_one_object_per_line():
    import json

    with run_exporter("--backend=none", "--log.format=json") as exp:
        exp.process.terminate()
        out, _ = exp.process.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(e) for e in lines)
    assert any("listening on" in e["msg"] for e in lines)
