"""Bad input at start-up: one line and exit status 2, never the whole usage or a traceback;
an environment variable named when it is the culprit; contradictions said; a harness that can
never run here refused before anything listens or loads."""

from __future__ import annotations

import socket

import pytest

from exporter.cli import CliError, build_parser, check_contradictions, with_environment
from exporter.runtime import build_runtime
from tests.conftest import free_port
from tests.harness_torch import torch
from tests.test_cli import cli, parse


def one_line_error(out) -> str:
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and "usage:" not in out.stderr, lines
    return lines[0]


@pytest.mark.parametrize(
    "args,says",
    [
        (["--collect.interval", "-1s"], "invalid duration '-1s': it must be greater than 0"),
        (["--collect.interval=-1s"], "invalid duration '-1s': it must be greater than 0"),
        (["--backend", "gpu"], "invalid choice: 'gpu'"),
        (["--harness.load", "2", "--no-harness"], "--harness.load 2 needs the harness"),
        (["--label", "team=a", "--label", "team=b"], "--label team=... is given twice"),
        (["--simulate.scenario", "idle:start=5"], "which GPU? add gpu=I"),
    ],
)
def test_a_flag_error_is_one_line_that_says_what_is_wrong(args, says):
    line = one_line_error(cli("serve", "--backend=none", *args))
    assert says in line, line


def test_a_usage_error_points_at_help_instead_of_printing_it():
    line = one_line_error(cli("serve", "--collect.interval", "soon"))
    assert line.endswith("(run `gpu-inference-exporter serve --help` for more)")
    line = one_line_error(cli("serve", "--no-such-flag"))
    assert line == (
        "gpu-inference-exporter serve: error: unrecognized arguments: --no-such-flag "
        "(run `gpu-inference-exporter serve --help` for more)"
    )


def test_an_environment_error_names_the_variable():
    line = one_line_error(cli("serve", env={"GIE_WEB_MAX_CONNECTIONS": "none", "PATH": "/usr/bin"}))
    assert line.startswith("gpu-inference-exporter: error: GIE_WEB_MAX_CONNECTIONS='none'")
    assert "--web.max-connections" in line and "expected a whole number" in line


def test_a_flag_on_the_command_line_still_wins_over_a_bad_variable():
    parser = build_parser()
    argv = with_environment(["serve", "--backend=none"], parser, {"GIE_BACKEND": "gpu"})
    assert argv == ["serve", "--backend=none"]


def test_scenario_times_take_the_units_of_the_duration_flags():
    args = parse(["serve", "--simulate.scenario", "xid:gpu=1,code=13,start=1.5m,every=500ms"])
    assert (args.scenarios[0].start, args.scenarios[0].every) == (90.0, 0.5)
    check_contradictions(args)  # nothing to say


@pytest.mark.parametrize(
    "flags,says",
    [
        (["--harness.kv-cache-memory=0.3"], "is a fraction of free CUDA memory, but the harness"),
        (["--harness.kv-cache-memory=1KiB"], "holds no KV block: one block of 16 tokens"),
        (["--harness.device=cuda"], "--harness.device cuda: PyTorch sees no CUDA device"),
        (["--harness.max-tokens=1024"], "--harness.max-tokens 1024 is beyond the tiny model"),
        (["--harness.max-prompt-tokens=4096"], "--harness.max-prompt-tokens 4096 is beyond"),
        (
            ["--harness.load=2", "--harness.load.max-tokens=64", "--harness.max-tokens=32"],
            "--harness.load.max-tokens fixed:64 reaches 64 tokens, over --harness.max-tokens 32",
        ),
        (
            ["--harness.load=2", "--harness.load.prompt-tokens=lognormal:600,1"],
            "has a median of 600 tokens, over --harness.max-prompt-tokens 512",
        ),
    ],
)
def test_a_harness_that_cannot_run_here_is_refused_before_it_starts(flags, says):
    if torch.cuda.is_available() and "cuda" in " ".join(flags):
        pytest.skip("this machine has CUDA")  # pragma: no cover - CI has none
    args = parse(["serve", "--backend=none", "--harness", "--harness.device=cpu", *flags])
    with pytest.raises(ValueError) as refused:
        build_runtime(backend="none", args=args, const_labels=())
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_a_weights_file_that_is_not_safetensors_exits_2_in_one_line(tmp_path):
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\x80\x04 a pickle, not safetensors")
    line = one_line_error(
        cli("serve", "--backend=none", "--harness", f"--harness.weights={weights}")
    )
    assert f"--harness.weights: {weights} is not a safetensors weights file" in line


def test_a_taken_port_is_found_before_the_model_loads_and_named_once():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "serve",
            "--backend=none",
            "--harness",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            f"--harness.listen-address=:{port}",
        )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line == (
        f"gpu-inference-exporter: error: cannot listen on 0.0.0.0:{port} "
        "(--harness.listen-address): address already in use"
    )
    assert "inference engine ready" not in out.stdout + out.stderr


def test_contradictions_are_cli_errors():
    args = parse(["serve", "--no-harness", "--harness.load=1"])
    with pytest.raises(CliError, match="needs the harness, which --no-harness turns off"):
        check_contradictions(args)
