"""The harness API's flags, `serve` running the harness by default (and without it when PyTorch
is missing), and /readyz on the metrics port waiting for the harness's warm-up."""

import asyncio
import logging
import socket
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import web

from exporter.cli import ListenAddress, build_parser
from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.loadgen import parse_length_distribution
from exporter.runtime import build_runtime, harness_wanted
from tests.conftest import REPO, free_port
from tests.harness_helpers import run
from tests.test_cli import cli, parse
from tests.test_harness_cli import WITHOUT_TORCH

#: A harness cheap enough for a test: the tiny model on the CPU with a 1 MiB KV pool.
CHEAP = ["--harness.preset=tiny", "--harness.device=cpu", "--harness.kv-cache-memory=1MiB"]


def test_api_flags_have_defaults_and_environment_variables():
    args = parse(["serve"])
    assert args.harness_listen_address == ListenAddress("127.0.0.1", 9467)
    assert (args.harness_max_prompt_tokens, args.harness_max_tokens) == (512, 256)
    assert args.harness_shed_kv_utilization == 0.9 and args.harness_max_waiting == 32
    assert args.harness_request_timeout == 5.0  # seconds
    assert args.harness_load == 0.0  # off
    assert str(args.harness_load_prompt_tokens) == "uniform:16,256"
    assert str(args.harness_load_max_tokens) == "uniform:16,128"
    defaults = AdmissionLimits()  # the API's own defaults are serve's
    assert (defaults.max_prompt_tokens, defaults.max_tokens) == (512, 256)
    assert (defaults.shed_kv_utilization, defaults.max_waiting) == (0.9, 32)
    assert defaults.request_timeout == 5.0
    env = {
        "GIE_HARNESS_LISTEN_ADDRESS": "0.0.0.0:8000",
        "GIE_HARNESS_MAX_PROMPT_TOKENS": "4096",
        "GIE_HARNESS_MAX_TOKENS": "1024",
        "GIE_HARNESS_SHED_KV_UTILIZATION": "0.75",
        "GIE_HARNESS_MAX_WAITING": "8",
        "GIE_HARNESS_REQUEST_TIMEOUT": "2500ms",
        "GIE_HARNESS_LOAD": "2.5",
        "GIE_HARNESS_LOAD_PROMPT_TOKENS": "lognormal:96,0.9",
        "GIE_HARNESS_LOAD_MAX_TOKENS": "64",
    }
    args = parse(["serve"], env)
    assert args.harness_listen_address == ListenAddress("0.0.0.0", 8000)
    assert (args.harness_max_prompt_tokens, args.harness_max_tokens) == (4096, 1024)
    assert args.harness_shed_kv_utilization == 0.75 and args.harness_max_waiting == 8
    assert args.harness_request_timeout == 2.5 and args.harness_load == 2.5
    assert args.harness_load_prompt_tokens == parse_length_distribution("lognormal:96,0.9")
    assert args.harness_load_max_tokens == parse_length_distribution("fixed:64")
    assert parse(["serve", "--harness.load=0.5"], env).harness_load == 0.5  # the flag wins


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--harness.shed-kv-utilization=1.5", "expected a ratio in (0, 1]"),
        ("--harness.shed-kv-utilization=0", "expected a ratio in (0, 1]"),
        ("--harness.max-waiting=0", "must be at least 1"),
        ("--harness.max-prompt-tokens=many", "expected a whole number"),
        ("--harness.request-timeout=0", "must be greater than 0"),
        ("--harness.load=-1", "expected requests per second"),
        ("--harness.load=inf", "expected requests per second"),
        ("--harness.load.prompt-tokens=gauss:3", "invalid length distribution 'gauss:3'"),
        ("--harness.listen-address=9467", "invalid listen address"),
        ("--no-harness=perhaps", "expected true or false"),
    ],
)
def test_bad_api_values_exit_2_naming_the_flag(flag, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["serve", flag])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert message in err and flag.split("=")[0] in err, err


def test_serve_help_lists_the_api_flags_with_their_environment_variables():
    parser = build_parser()
    serve = next(a for a in parser._actions if hasattr(a, "choices") and a.choices)
    text = " ".join(serve.choices["serve"].format_help().split())
    for flag, env in [
        ("--no-harness", None),
        ("--harness.listen-address", "GIE_HARNESS_LISTEN_ADDRESS"),
        ("--harness.max-prompt-tokens", "GIE_HARNESS_MAX_PROMPT_TOKENS"),
        ("--harness.max-tokens", "GIE_HARNESS_MAX_TOKENS"),
        ("--harness.shed-kv-utilization", "GIE_HARNESS_SHED_KV_UTILIZATION"),
        ("--harness.max-waiting", "GIE_HARNESS_MAX_WAITING"),
        ("--harness.request-timeout", "GIE_HARNESS_REQUEST_TIMEOUT"),
        ("--harness.load", "GIE_HARNESS_LOAD"),
        ("--harness.load.prompt-tokens", "GIE_HARNESS_LOAD_PROMPT_TOKENS"),
        ("--harness.load.max-tokens", "GIE_HARNESS_LOAD_MAX_TOKENS"),
    ]:
        assert flag in text and (env is None or env in text), flag
    assert "default: 127.0.0.1:9467" in text
    assert "on with --backend simulated when PyTorch is installed" in text


def test_readyz_on_the_metrics_port_is_503_until_the_harness_warmed_up():
    address = "--harness.listen-address=127.0.0.1:0"
    args = parse(["serve", "--backend=none", "--harness", address, *CHEAP])
    runtime = build_runtime(backend="none", args=args, const_labels=())
    assert runtime.harness is not None and runtime.harness_api is not None  # asked for

    async def readyz(url):
        async with aiohttp.ClientSession() as client, client.get(url + "/readyz") as response:
            return response.status, await response.json()

    async def scenario():
        runner = web.AppRunner(runtime.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            await runtime.sampler.cycle()  # the sampler's own check passes from here on
            before = await readyz(url)
            runtime.harness.start()
            await runtime.harness.wait_ready(30)
            await runtime.sampler.cycle()
            after = await readyz(url)
            ready_gauge = runtime.harness.metrics.snapshot().ready
            return before, after, ready_gauge
        finally:
            await runner.cleanup()
            await asyncio.to_thread(runtime.harness.stop)
            runtime.sampler.close()

    (status, body), (status_after, body_after), ready_gauge = run(scenario())
    assert status == 503
    assert body["problems"] == ["inference harness is loading its model and warming up"]
    assert (status_after, body_after) == (200, {"ready": True, "problems": []})
    assert ready_gauge  # inference_ready 1


def test_no_harness_builds_no_harness_and_says_nothing_about_it(caplog):
    args = parse(["serve", "--backend=none", "--no-harness"])
    with caplog.at_level(logging.INFO):
        runtime = build_runtime(backend="none", args=args, const_labels=())
    assert runtime.harness is None and runtime.harness_api is None
    assert runtime.sampler.source_names == []
    assert not [r for r in caplog.records if "harness" in r.getMessage()]  # asked: no note


def test_serve_runs_without_the_harness_when_torch_is_missing_and_says_so_once():
    port = free_port()
    cmd = [sys.executable, "-c", WITHOUT_TORCH, "serve", "--backend=simulated"]
    cmd += [f"--web.listen-address=127.0.0.1:{port}", "--collect.interval=0.2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the exporter did not listen within 30 s"
                time.sleep(0.1)
        time.sleep(0.5)  # a few cycles: the note must not repeat
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode == 0, out
    notes = [line for line in out.splitlines() if "inference harness is off" in line]
    assert len(notes) == 1, out
    assert "PyTorch is not installed" in notes[0]
    assert "pip install 'gpu-inference-exporter[harness]'" in notes[0]
    assert "Traceback" not in out


def test_a_taken_harness_port_is_a_clear_error_naming_its_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "serve",
            "--backend=none",
            "--harness",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            f"--harness.listen-address=127.0.0.1:{port}",
            *CHEAP,
        )
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port} (--harness.listen-address)" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("backend", "flags", "runs"),
    [
        ("simulated", [], True),  # the demo
        ("nvml", [], False),  # a real GPU: opt-in
        ("dcgm", [], False),
        ("none", [], False),
        ("nvml", ["--harness"], True),
        ("simulated", ["--no-harness"], False),
    ],
)
def test_the_harness_is_opt_in_on_a_real_gpu_backend(backend, flags, runs, caplog):
    args = parse(["serve", f"--backend={backend}", *flags])
    with caplog.at_level(logging.INFO):
        assert harness_wanted(args, backend) is runs
    notes = [r.getMessage() for r in caplog.records if "harness is off" in r.getMessage()]
    if backend in ("nvml", "dcgm", "none") and not flags:
        assert notes == [
            f"the inference harness is off: with the {backend} backend it is opt-in "
            "(--harness), as it runs a model on the GPU it monitors"
        ]
    else:
        assert notes == []
