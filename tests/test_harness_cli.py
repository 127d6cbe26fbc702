"""`--harness.*` flags, the exporter without torch, and `serve --harness` as a real process."""

import subprocess
import sys
import time

import pytest

from exporter.harness.config import KVCacheMemory
from tests.conftest import REPO, run_exporter, series
from tests.test_cli import cli, parse

#: Imports the CLI with torch made unimportable, then runs main() with the given arguments.
WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = None; "
    "from exporter.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_harness_flags_have_defaults_and_environment_variables():
    args = parse(["serve"])
    assert args.harness is None  # on when PyTorch is installed
    assert (args.harness_preset, args.harness_device, args.harness_dtype) == ("auto",) * 3
    assert args.harness_block_size == 16 and args.harness_weights is None
    assert args.harness_kv_cache_memory is None  # by device: 256MiB on CUDA, 64MiB on CPU
    env = {
        "GIE_HARNESS": "true",
        "GIE_HARNESS_PRESET": "small",
        "GIE_HARNESS_BLOCK_SIZE": "32",
        "GIE_HARNESS_KV_CACHE_MEMORY": "0.4",
        "GIE_HARNESS_DEVICE": "cuda:1",
        "GIE_HARNESS_DTYPE": "float16",
        "GIE_HARNESS_WEIGHTS": "/models/small.safetensors",
    }
    args = parse(["serve"], env)
    assert args.harness is True and args.harness_preset == "small"
    assert args.harness_block_size == 32
    assert args.harness_kv_cache_memory == KVCacheMemory(fraction=0.4)
    assert (args.harness_device, args.harness_dtype) == ("cuda:1", "float16")
    assert args.harness_weights == "/models/small.safetensors"
    assert parse(["serve", "--harness"]).harness is True
    assert parse(["serve", "--harness=false"], {"GIE_HARNESS": "1"}).harness is False
    assert parse(["serve", "--no-harness"], {"GIE_HARNESS": "1"}).harness is False
    assert parse(["serve", "--no-harness=false"]).harness is True


@pytest.mark.parametrize(
    "flag,message",
    [
        ("--harness.kv-cache-memory=lots", "invalid KV cache size"),
        ("--harness.device=tpu", "expected auto, cpu, cuda or cuda:N"),
        ("--harness.block-size=0", "must be at least 1"),
        ("--harness.preset=huge", "invalid choice"),
        ("--harness=maybe", "expected true or false"),
    ],
)
def test_bad_harness_values_exit_2(flag, message):
    out = cli("serve", "--backend=none", flag)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_serve_help_lists_the_harness_flags():
    out = cli("serve", "--help")
    for flag in ("--harness.kv-cache-memory", "GIE_HARNESS_BLOCK_SIZE", "--harness.device"):
        assert flag in out.stdout


def test_the_exporter_imports_and_serves_without_torch():
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; import exporter.cli, exporter.runtime, exporter.sources.torch, "
            "exporter.sources.harness, exporter.harness.metrics, exporter.harness.scheduler; "
            "print('torch' in sys.modules)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"  # nothing on the exporter's path imports torch


def test_serve_harness_without_torch_says_how_to_install_it():
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "serve", "--backend=none", "--harness"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "--harness needs PyTorch" in out.stderr
    assert "gpu-inference-exporter[harness]" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_missing_weights_file_is_a_usage_error():
    out = cli("serve", "--backend=none", "--harness", "--harness.weights=/nope.safetensors")
    assert out.returncode == 2 and "/nope.safetensors is not a file" in out.stderr


def test_serve_with_the_harness_exports_its_figures():
    args = ["--backend=none", "--collect.interval=0.2", "--harness"]
    with run_exporter(*args, "--harness.kv-cache-memory=1MiB", harness=True) as exp:
        deadline = time.monotonic() + 30
        while True:
            m = exp.metrics()
            if series(m, "inference_ready") and series(m, "inference_ready").popitem()[1] == 1:
                break
            assert time.monotonic() < deadline, "inference_ready never became 1"
            time.sleep(0.1)
    assert series(m, "exporter_source_up", source="harness").popitem()[1] == 1
    assert series(m, "exporter_source_up", source="torch").popitem()[1] == 1
    assert series(m, "inference_model_info", model="tiny", dtype="float32", device="cpu")
    # 1 MiB of 8 KiB blocks (16 tokens x 2 layers x K,V x 2 heads x 16 dims x 4 bytes)
    assert series(m, "inference_kv_cache_blocks", state="free").popitem()[1] == 128
    assert len(series(m, "inference_requests_total")) == 6
    assert not [k for k in m if k[0].startswith("torch_cuda_")]  # no CUDA here
