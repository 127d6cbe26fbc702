"""The chart's sidecar form and the allocator probe: a memory-backed emptyDir that the exporter
reads with --torch.probe-dir, and what the inference container adds to write into it."""

from __future__ import annotations

import copy

import helm_python
import pytest
import yaml

from tests.chart_helpers import (
    env,
    of_kind,
    render,
    validate_engine_pod,
    value_set,
)

MOUNT = "/run/gie-torch-probe"


def snippets(values: dict) -> tuple[dict, list, dict]:
    """The sidecar ConfigMap's container, volumes and inference-container additions."""
    (data,) = [
        m["data"] for m in of_kind(render(values), "ConfigMap") if "engine.yaml" in m["data"]
    ]
    return (
        yaml.safe_load(data["container.yaml"]),
        yaml.safe_load(data["volumes.yaml"]),
        yaml.safe_load(data["engine.yaml"]),
    )


def sidecar(**probe) -> dict:
    values = copy.deepcopy(value_set("sidecar"))
    values["sidecar"]["torchProbe"] = probe
    return values


def test_the_exporter_and_the_inference_container_share_the_probe_directory():
    container, volumes, engine = snippets(value_set("sidecar"))
    assert f"--torch.probe-dir={MOUNT}" in container["args"]
    assert not [a for a in container["args"] if a.startswith("--torch.probe-uid")]
    assert {"name": "gie-torch-probe", "mountPath": MOUNT} in container["volumeMounts"]
    (volume,) = [v for v in volumes if v["name"] == "gie-torch-probe"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Mi"}
    assert env(engine)["GIE_TORCH_PROBE_DIR"] == MOUNT
    assert engine["volumeMounts"] == [{"name": "gie-torch-probe", "mountPath": MOUNT}]
    # the user's pod with both: valid for every Kubernetes the chart claims
    vllm = {"name": "vllm", "image": "vllm/vllm-openai:v0.10.2", **engine}
    vllm["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    validate_engine_pod(vllm, container, volumes)


def test_trusted_uids_and_another_mount_path_reach_the_flags():
    container, _, engine = snippets(sidecar(mountPath="/probe", uids=[1000, 2000]))
    assert "--torch.probe-dir=/probe" in container["args"]
    assert {"--torch.probe-uid=1000", "--torch.probe-uid=2000"} <= set(container["args"])
    assert env(engine)["GIE_TORCH_PROBE_DIR"] == "/probe"


def test_turned_off_there_is_no_volume_no_flag_and_nothing_to_add():
    container, volumes, engine = snippets(sidecar(enabled=False))
    assert not [a for a in container["args"] if a.startswith("--torch.probe")]
    assert [v["name"] for v in volumes] == ["gie-tmp"]
    assert engine == {}


def test_the_daemonset_has_no_probe_directory():
    (daemonset,) = [d for d in render({}) if d["kind"] == "DaemonSet"]
    spec = daemonset["spec"]["template"]["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["gie-tmp"]
    assert not [a for a in spec["containers"][0]["args"] if a.startswith("--torch.probe")]


@pytest.mark.parametrize(
    "probe,where",
    [({"mountPath": "relative"}, "mountPath"), ({"uids": [-1]}, "uids"), ({"on": True}, "on")],
)
def test_bad_probe_values_are_refused(probe, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(sidecar(**probe))
    assert where in str(err.value)
