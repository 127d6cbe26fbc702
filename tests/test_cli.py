"""The command line: help, environment variables, bad input as exit status 2 (no traceback)."""

import argparse
import subprocess
import sys

import pytest

from exporter.cli import (
    ListenAddress,
    build_parser,
    env_name,
    main,
    parse_duration,
    parse_listen_address,
    with_environment,
)
from exporter.identity import constant_labels, pod_info
from tests.conftest import REPO


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def parse(argv, environ=None):
    parser = build_parser()
    return parser.parse_args(with_environment(argv, parser, environ or {}))


def test_serve_help_explains_every_flag_and_its_environment_variable():
    out = cli("serve", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for flag in (
        "--backend",
        "--web.listen-address",
        "--collect.interval",
        "--collect.timeout",
        "--label",
        "--simulate.gpus",
        "--simulate.model",
        "--simulate.seed",
        "--simulate.scenario",
        "--log.format",
        "--log.level",
    ):
        assert flag in text
        assert env_name(flag) in text
    for scenario in ("thermal_throttle", "memory_leak", "fragmentation", "gpu_lost", "nvlink_down"):
        assert scenario in text
    assert "NODE_NAME" in text


@pytest.mark.parametrize(
    "args,message",
    [
        (["serve", "--backend", "gpu"], "invalid choice: 'gpu'"),
        (["serve", "--collect.interval", "fast"], "invalid duration 'fast'"),
        (["serve", "--collect.interval", "0"], "must be positive"),
        (["serve", "--web.listen-address", "9466"], "invalid listen address"),
        (["serve", "--web.listen-address", ":99999"], "invalid listen address"),
        (["serve", "--label", "gpu=3"], "used by the exporter's own series"),
        (["serve", "--label", "2x=y"], "not a valid Prometheus label name"),
        (["serve", "--label", "novalue"], "expected KEY=VALUE"),
        (["serve", "--simulate.gpus", "0"], "must be at least 1"),
        (["serve", "--simulate.scenario", "meltdown:gpu=1"], "meltdown"),
        (
            ["serve", "--simulate.scenario", "gpu_lost:start=2", "--backend", "none"],
            "--simulate.scenario needs --backend simulated",
        ),
        (["serve", "--dcgm.embedded=maybe"], "expected true or false, got 'maybe'"),
        (["serve", "--backend=simulated", "--simulate.scenario=gpu_lost:gpu=9"], "gpu"),
        (
            ["serve", "--backend=simulated", "--simulate.gpus=2", "--simulate.scenario=idle:gpu=2"],
            "gpu",
        ),
        (["serve", "--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(args, message):
    out = cli(*args)
    assert out.returncode == 2, out
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_environment_value_exits_2_naming_the_flag():
    out = cli("serve", env={"GIE_COLLECT_INTERVAL": "soon", "PATH": "/usr/bin"})
    assert out.returncode == 2
    assert "--collect.interval" in out.stderr and "soon" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_port_in_use_is_a_clear_error():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "serve", "--backend", "none", "--no-harness", f"--web.listen-address=127.0.0.1:{port}"
        )
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_environment_sets_flags_and_the_command_line_wins():
    env = {
        "GIE_COLLECT_INTERVAL": "2s",
        "GIE_BACKEND": "simulated",
        "GIE_SIMULATE_SCENARIO": "gpu_lost:gpu=3,start=2;thermal_throttle:gpu=1",
        "GIE_LABEL": "cluster=a;region=eu",
    }
    args = parse(["serve"], env)
    assert args.interval == 2.0
    assert args.backend == "simulated"
    assert [s.name for s in args.scenarios] == ["gpu_lost", "thermal_throttle"]
    assert args.labels == [("cluster", "a"), ("region", "eu")]
    args = parse(["serve", "--collect.interval=500ms", "--label", "cluster=b"], env)
    assert args.interval == 0.5
    assert args.labels == [("cluster", "b")]


def test_flags_without_a_command_mean_serve():
    parser = build_parser()
    assert parser.parse_args(["serve"]).command == "serve"
    out = cli("--collect.interval", "nope")
    assert out.returncode == 2 and "invalid duration" in out.stderr


@pytest.mark.parametrize(
    "text,seconds",
    [("1", 1.0), ("0.25", 0.25), ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text,address",
    [
        (":9466", ListenAddress(None, 9466)),
        ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
        ("[::1]:9466", ListenAddress("::1", 9466)),
        ("localhost:80", ListenAddress("localhost", 80)),
    ],
)
def test_parse_listen_address(text, address):
    assert parse_listen_address(text) == address


def test_parse_listen_address_rejects_garbage():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen_address("localhost")


def test_downward_api_identity_becomes_labels_and_flags_override():
    env = {"NODE_NAME": "gpu-node-7", "POD_NAME": "llm-0", "POD_NAMESPACE": "serving"}
    # the pod's identity changes with every rollout: not on every series by default
    assert constant_labels([], env) == (("node", "gpu-node-7"),)
    assert constant_labels([], env, pod_labels=True) == (
        ("namespace", "serving"),
        ("node", "gpu-node-7"),
        ("pod", "llm-0"),
    )
    assert constant_labels([("node", "override"), ("cluster", "c1")], env) == (
        ("cluster", "c1"),
        ("node", "override"),
    )
    # outside Kubernetes the node is the host name; inside, never the pod's host name
    assert constant_labels([], {}, hostname="bare-metal-3") == (("node", "bare-metal-3"),)
    assert constant_labels([], {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, hostname="pod-x") == ()
    with pytest.raises(ValueError, match="given twice"):
        constant_labels([("cluster", "a"), ("cluster", "b")], env)


def test_pod_identity_is_one_info_series():
    env = {"NODE_NAME": "gpu-node-7", "POD_NAME": "llm-0", "POD_NAMESPACE": "serving"}
    (info,) = pod_info(env)
    assert info.name == "exporter_pod_info" and dict(info.labels) == {
        "namespace": "serving",
        "pod": "llm-0",
    }
    assert pod_info(env, pod_labels=True) == []  # already on every series
    assert pod_info({}) == []


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert "gpu-inference-exporter 0." in capsys.readouterr().out
