"""The Helm chart, rendered offline for every value set in its ci/ folder: lint, every core manifest
strictly valid for the oldest and newest Kubernetes the chart claims, every operator kind valid
against prometheus-operator's CRD schemas (unknown fields refused), the generated parts equal to
what they are generated from, and bad values refused by values.schema.json."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from exporter.chart import SECRET_PLACEHOLDER, alertmanager_config_spec, secret_keys
from exporter.generate import artifacts
from tests.chart_helpers import (
    CHART,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    OPERATOR_GROUP,
    VALUE_SETS,
    env,
    exporter_container,
    of_kind,
    one,
    operator_errors,
    render,
    render_files,
    render_value_set,
    validate_engine_pod,
    value_set,
)
from tests.conftest import REPO

GPU_RESOURCE = "nvidia.com/gpu"


def test_the_ci_folder_covers_the_forms_the_issue_names():
    assert {"default", "canary", "dcgm", "sidecar", "monitor-off", "production"} <= set(VALUE_SETS)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean(name):
    report = helm_python.lint(CHART, value_set(name), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_core_manifests_are_strictly_valid(name, version):
    core = [d for d in render_value_set(name) if not d["apiVersion"].startswith(OPERATOR_GROUP)]
    assert core
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {str(err).splitlines()[0]}")


@pytest.mark.parametrize("name", VALUE_SETS)
def test_operator_kinds_match_the_crd_schemas(name):
    for doc in render_value_set(name):
        if doc["apiVersion"].startswith(OPERATOR_GROUP):
            assert operator_errors(doc) == [], doc["kind"]


def test_the_operator_schemas_refuse_unknown_fields_and_bad_durations():
    monitor = copy.deepcopy(one(render_value_set("default"), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["honourLabels"] = True
    assert any("honourLabels" in e for e in operator_errors(monitor))
    monitor = copy.deepcopy(one(render_value_set("default"), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert operator_errors(monitor)
    routing = copy.deepcopy(one(render_value_set("production"), "AlertmanagerConfig"))
    pagers = [r for r in routing["spec"]["receivers"] if r.get("pagerdutyConfigs")]
    pagers[0]["pagerdutyConfigs"][0]["routing_key"] = "plain"
    assert operator_errors(routing)


def test_the_kinds_each_form_renders():
    kinds = {name: sorted({d["kind"] for d in render_value_set(name)}) for name in VALUE_SETS}
    assert kinds["default"] == [
        "ConfigMap",
        "DaemonSet",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    assert "AlertmanagerConfig" in kinds["production"]
    assert "PodMonitor" in kinds["podmonitor"] and "Service" not in kinds["podmonitor"]
    assert not [k for k in kinds["monitor-off"] if k.endswith(("Monitor", "Rule"))]
    assert "DaemonSet" not in kinds["sidecar"] and "PodMonitor" in kinds["sidecar"]


def test_the_daemonset_reaches_nvml_like_nvidias_own():
    docs = render_value_set("default")
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["runtimeClassName"] == "nvidia"
    container = exporter_container(docs)
    assert env(container)["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env(container)["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    for section in ("requests", "limits"):
        assert GPU_RESOURCE not in container["resources"].get(section, {})
    assert "--no-harness" in container["args"]
    assert container["image"].endswith("/gpu-inference-exporter:0.1.0")


def test_the_pod_knows_its_node_and_name_from_the_downward_api():
    variables = env(exporter_container(render_value_set("default")))
    assert variables["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    container = exporter_container(render_value_set("dcgm"))
    assert "--dcgm.address=$(NODE_IP):5555" in container["args"]
    assert env(container)["NODE_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert "--backend=dcgm" in container["args"]


def test_probes_and_a_hardened_security_context():
    docs = render_value_set("default")
    container = exporter_container(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    pod = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert {"name": "gie-tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert 5 <= pod["terminationGracePeriodSeconds"] <= 30


def test_only_embedded_dcgm_profiling_gets_root_and_sys_admin():
    for name in VALUE_SETS:
        if name in ("sidecar", "dcgm-embedded"):
            continue
        assert exporter_container(render_value_set(name))["securityContext"]["capabilities"] == {
            "drop": ["ALL"]
        }, name
    sc = exporter_container(render_value_set("dcgm-embedded"))["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert sc["runAsUser"] == 0 and sc["runAsNonRoot"] is False


def test_the_canary_runs_the_harness_image_with_its_own_resources():
    docs = render_value_set("canary")
    container = exporter_container(docs)
    values = value_set("canary")["canary"]
    assert "/gpu-inference-exporter-harness:0.1.0" in container["image"]
    assert "--harness" in container["args"] and "--no-harness" not in container["args"]
    assert "--harness.device=cuda" in container["args"]
    assert f"--harness.kv-cache-memory={values['kvCacheMemory']}" in container["args"]
    assert container["resources"] == values["resources"]
    assert env(container)["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    grace = one(docs, "DaemonSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 10
    notes = render_files(value_set("canary"))["NOTES.txt"]
    assert "Canary ON" in notes and values["kvCacheMemory"] in notes and "GPU" in notes


def test_the_service_monitor_keeps_the_exporters_labels_and_adds_node_and_cluster():
    monitor = one(render_value_set("production"), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "monitoring"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "metrics" and endpoint["interval"] == "30s"
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["node"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
    assert relabel["instance"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
    assert relabel["cluster"]["replacement"] == "prod-eu-1"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    default = one(render_value_set("default"), "ServiceMonitor")
    assert default["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(render_value_set("default"), "Service")
    assert service["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]


def test_the_exporters_job_is_the_one_the_alert_rules_name():
    rules = (REPO / "alerts/generated/rules.yml").read_text()
    named = set(re.findall(r'job="([^"]+)"', rules))
    for name, kind in [("default", "ServiceMonitor"), ("podmonitor", "PodMonitor")]:
        monitor = one(render_value_set(name), kind)
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
        relabel = endpoints[0]["relabelings"]
        (job,) = [r["replacement"] for r in relabel if r["targetLabel"] == "job"]
        assert not named or job in named, (job, named)
    exporter, server = one(render_value_set("sidecar"), "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert "job" in {r["targetLabel"] for r in exporter["relabelings"]}
    assert "job" not in {r["targetLabel"] for r in server["relabelings"]}


def test_the_prometheus_rule_is_the_generated_rule_file():
    generated = yaml.safe_load((REPO / "alerts/generated/rules.yml").read_text())
    for name in ("default", "production"):
        rule = one(render_value_set(name), "PrometheusRule")
        assert rule["spec"]["groups"] == generated["groups"]


def test_the_dashboard_config_maps_are_the_generated_dashboards():
    generated = {p.name: p.read_text() for p in (REPO / "dashboards/generated").glob("*.json")}
    assert generated
    maps = of_kind(render_value_set("production"), "ConfigMap")
    data = {k: v for m in maps for k, v in m["data"].items()}
    assert data == generated
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"]["grafana_folder"] == "GPUs"
        assert m["metadata"]["namespace"] == "grafana"


def test_the_alertmanager_config_is_the_generated_routing_with_keys_from_the_secret():
    source = yaml.safe_load((REPO / "alerts/alertmanager.yml").read_text())
    expected = alertmanager_config_spec(source)
    routing = one(render_value_set("production"), "AlertmanagerConfig")
    secret = value_set("production")["alertmanagerConfig"]["secretName"]
    assert routing["metadata"]["labels"]["alertmanagerConfig"] == "gpu"
    text = yaml.safe_dump(expected).replace(SECRET_PLACEHOLDER, secret)
    assert routing["spec"] == yaml.safe_load(text)
    assert {r["name"] for r in routing["spec"]["receivers"]} == {
        r["name"] for r in source["receivers"]
    }
    assert "routing_key" not in yaml.safe_dump(routing)
    notes = render_files(value_set("production"))["NOTES.txt"]
    for key in secret_keys(expected):
        assert f"--from-literal={key}=" in notes


def test_the_alertmanager_config_needs_the_secret_name():
    with pytest.raises(helm_python.HelmError, match=r"alertmanagerConfig\.secretName"):
        render({"alertmanagerConfig": {"enabled": True}})


def test_the_sidecar_container_fits_an_inference_pod_and_both_are_scraped():
    docs = render_value_set("sidecar")
    (snippet,) = [m["data"] for m in of_kind(docs, "ConfigMap") if "container.yaml" in m["data"]]
    container = yaml.safe_load(snippet["container.yaml"])
    volumes = yaml.safe_load(snippet["volumes.yaml"])
    assert container["ports"][0]["name"] == "gie-metrics"
    assert "--backend=nvml" in container["args"] and "--no-harness" in container["args"]
    assert "NODE_NAME" in env(container) and "POD_NAME" in env(container)
    # In someone else's pod, the container carries its own non-root identity and seccomp.
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    engine = {"name": "vllm", "image": "vllm/vllm-openai:v0.10.2", "ports": []}
    engine["ports"].append({"name": "http", "containerPort": 8000})
    engine["resources"] = {"limits": {GPU_RESOURCE: 1}}
    validate_engine_pod(engine, container, volumes)
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm"}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["inference"]
    exporter, server = monitor["spec"]["podMetricsEndpoints"]
    assert exporter["port"] == "gie-metrics" and exporter["honorLabels"] is True
    assert server["port"] == "http" and server["path"] == "/metrics"
    for endpoint in (exporter, server):
        labels = {r["targetLabel"] for r in endpoint["relabelings"]}
        assert {"node", "cluster"} <= labels and "instance" not in labels  # pods share nodes


def test_the_engines_are_scraped_with_the_identity_the_inference_layer_keeps():
    """vLLM or SGLang servers beside the DaemonSet: their PodMonitor labels each target with its
    pod's node and the cluster (the layer's identity, what joins an engine to its GPUs), keeps
    the pod's own instance (servers share nodes) and lets no scraped label override them."""
    docs = render_value_set("engine-monitor")
    monitors = {m["metadata"]["name"]: m for m in of_kind(docs, "PodMonitor")}
    engines = monitors.pop("gie-gpu-inference-exporter-engines")
    assert not monitors and "DaemonSet" in {d["kind"] for d in docs}
    assert engines["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm"}
    assert engines["spec"]["namespaceSelector"]["matchNames"] == ["inference"]
    assert engines["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = engines["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert "honorLabels" not in endpoint
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert set(relabel) == {"node", "cluster"}
    assert relabel["node"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]
    assert relabel["cluster"]["replacement"] == "prod-eu-1"
    # the same identity as the exporter's series on that node
    (exporter,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    exporter_labels = {r["targetLabel"]: r for r in exporter["relabelings"]}
    assert exporter_labels["node"]["sourceLabels"] == relabel["node"]["sourceLabels"]
    assert exporter_labels["cluster"]["replacement"] == relabel["cluster"]["replacement"]
    # off by default, and never beside the sidecar form (sidecar.engine scrapes the engine)
    assert not of_kind(render_value_set("default"), "PodMonitor")
    beside = render({**value_set("sidecar"), "engineMonitor": {"enabled": True}})
    assert [m["metadata"]["name"] for m in of_kind(beside, "PodMonitor")] == [
        "gie-gpu-inference-exporter"
    ]


BAD_VALUES = [
    ({"port": "9466"}, "/port"),
    ({"replicas": 3}, "replicas"),
    ({"monitor": {"interval": "15 seconds"}}, "/monitor/interval"),
    ({"monitor": {"kind": "ServiceMonitors"}}, "/monitor/kind"),
    ({"canary": {"enabled": "yes"}}, "/canary/enabled"),
    ({"canary": {"kvCacheMemory": "lots"}}, "/canary/kvCacheMemory"),
    ({"dcgm": {"hostengine": "x:5555"}}, "hostengine"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"nodeSelector": {"nvidia.com/gpu.present": True}}, "/nodeSelector"),
    ({"mode": "deployment"}, "/mode"),
    ({"extraArgs": ["serve"]}, "/extraArgs/0"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES)
def test_bad_values_are_refused_with_the_key_named(values, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values)
    assert where in str(err.value)


def test_the_servicemonitor_needs_the_service():
    with pytest.raises(helm_python.HelmError, match=r"service\.enabled"):
        render({"service": {"enabled": False}})


def test_custom_thresholds_move_the_chart(tmp_path: Path):
    """`generate --alerts-config` regenerates the chart's rules: render a copy so made."""
    config = tmp_path / "thresholds.yml"
    config.write_text("duration_scale: 0.5\n")  # every `for:` halved
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    generated = artifacts(str(config))
    prefix = "helm/gpu-inference-exporter/"
    for rel, make in generated.items():
        if rel.startswith(prefix):
            (chart / rel.removeprefix(prefix)).write_text(make(""))
    rule = one(render({}, chart=chart), "PrometheusRule")
    custom = yaml.safe_load(generated["alerts/generated/rules.yml"](""))
    assert rule["spec"]["groups"] == custom["groups"]
    default = one(render_value_set("default"), "PrometheusRule")
    assert rule["spec"]["groups"] != default["spec"]["groups"]


def test_the_packaged_chart_renders_the_same(tmp_path: Path):
    """`helm package` keeps files/ (the .helmignore drops only ci/): the archive a user installs
    renders what the tests checked."""
    archive = helm_python.package(CHART, destination=tmp_path)
    chart = helm_python.Chart.load_archive(Path(archive).read_bytes())
    values = value_set("production")
    packed = chart.render(values, name="gie", namespace=NAMESPACE)
    assert {k.split("/templates/", 1)[1]: v for k, v in packed.items()} == render_files(values)
    assert not [f["name"] for f in chart.files if f["name"].startswith("ci/")]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_chart_accepts_the_kubernetes_versions_it_claims(version):
    report = helm_python.lint(CHART, strict=True, kube_version=f"v{version}")
    assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2]
