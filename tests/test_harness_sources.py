"""The torch allocator source (from memory_stats dicts; absent on CPU) and the harness source
through the sampler into /metrics."""

import asyncio
import os
import shutil
import subprocess

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from exporter.exposition import CONTENT_TYPE_OPENMETRICS, Format
from exporter.probe.stats import TorchCudaStats
from exporter.sampler import Sampler
from exporter.server import build_app
from exporter.sources.harness import HarnessSource
from exporter.sources.torch import (
    GpuLookup,
    TorchAllocatorSource,
    allocator_samples,
    expandable_segments_enabled,
)
from tests.conftest import parse_metrics, series
from tests.fake_cuda import FakeCuda, FakeDevice, memory_stats
from tests.harness_helpers import idle, run, tiny_engine, torch, until

GIB = 2**30
UUID0 = "GPU-5a1e7d0c-3b7e-4f4c-9d55-0123456789ab"
UUID1 = "GPU-9f0e1d2c-aaaa-bbbb-cccc-ddddeeeeffff"
PROC = {"pid": "4242", "process": "python3"}


def values(samples) -> dict[str, float]:
    return {s.name: s.value for s in samples}


def test_allocator_figures_from_memory_stats():
    stats = memory_stats(6 * GIB, 10 * GIB, inactive_split=GIB, retries=3, ooms=1)
    got = values(allocator_samples(stats, gpu="0", uuid=UUID0, **PROC))
    assert got == {
        "torch_cuda_memory_allocated_bytes": 6 * GIB,
        "torch_cuda_memory_reserved_bytes": 10 * GIB,
        "torch_cuda_memory_inactive_split_bytes": GIB,
        "torch_cuda_fragmentation_ratio": pytest.approx(0.1),
        "torch_cuda_alloc_retries_total": 3,
        "torch_cuda_ooms_total": 1,
    }


@pytest.mark.parametrize("expandable,reported", [(True, True), (False, False), (True, False)])
def test_without_inactive_split_the_ratio_falls_back_to_unused_reserved(expandable, reported):
    stats = memory_stats(6 * GIB, 8 * GIB, inactive_split=GIB if reported else None)
    samples = allocator_samples(stats, gpu="0", uuid=UUID0, **PROC, expandable_segments=expandable)
    got = values(samples)
    assert "torch_cuda_memory_inactive_split_bytes" not in got  # not reported: absent, not 0
    assert got["torch_cuda_fragmentation_ratio"] == pytest.approx(0.25)  # (8 - 6) / 8


def test_nothing_reserved_is_no_fragmentation():
    got = values(allocator_samples(memory_stats(0, 0, 0), gpu="0", uuid=UUID0, **PROC))
    assert got["torch_cuda_fragmentation_ratio"] == 0


@pytest.mark.parametrize(
    "environ,enabled",
    [
        ({"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}, True),
        ({"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128, expandable_segments:true"}, True),
        ({"PYTORCH_ALLOC_CONF": "expandable_segments:True"}, True),
        ({"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False"}, False),
        ({"PYTORCH_CUDA_ALLOC_CONF": "garbage_collection_threshold:0.6"}, False),
        ({}, False),
    ],
)
def test_expandable_segments_from_the_allocator_config(environ, enabled):
    assert expandable_segments_enabled(environ) is enabled


def test_the_source_labels_each_device_with_nvml_index_and_uuid_through_the_sampler():
    cuda = FakeCuda(
        [
            FakeDevice(UUID0, allocated=GIB, reserved=2 * GIB, inactive_split=GIB // 2),
            FakeDevice(UUID1, allocated=3 * GIB, reserved=4 * GIB, inactive_split=0),
            FakeDevice("GPU-00000000-1111-2222-3333-444444444444", allocations=0),  # unused
        ]
    )
    # CUDA_VISIBLE_DEVICES=3,1,0: device 0 is NVML's GPU 3; GPU 1 unknown to NVML keeps the
    # index CUDA_VISIBLE_DEVICES gives it; the device never allocated on is left out
    reader = TorchCudaStats({"CUDA_VISIBLE_DEVICES": "3,1,0"}, cuda=cuda)
    gpus = GpuLookup(lambda: {UUID0: ("3", UUID0)})
    source = TorchAllocatorSource(reader, environ={}, gpus=gpus)
    sampler = Sampler([source], interval=1.0)
    snapshot = asyncio.run(sampler.cycle())
    m = parse_metrics(snapshot.body(Format.TEXT).decode())
    assert series(m, "exporter_source_up", source="torch").popitem()[1] == 1
    frag = {
        dict(k[1])["uuid"]: (dict(k[1]), v)
        for k, v in series(m, "torch_cuda_fragmentation_ratio").items()
    }
    assert frag.keys() == {UUID0, UUID1}
    assert frag[UUID0][1] == 0.25 and frag[UUID0][0]["gpu"] == "3"
    assert frag[UUID1][1] == 0.0 and frag[UUID1][0]["gpu"] == "1"
    assert {lb["pid"] for lb, _ in frag.values()} == {str(os.getpid())}
    assert all(lb["process"] for lb, _ in frag.values())


def test_on_this_cpu_machine_the_source_reports_nothing_and_never_initializes_cuda():
    source = TorchAllocatorSource()
    assert source.collect() == []
    assert not torch.cuda.is_initialized()


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: scripts/test installs Debian's prometheus package"
    return path


def test_harness_figures_through_the_sampler_into_metrics():
    async def scenario():
        async with tiny_engine(blocks=64) as engine:
            done = await asyncio.gather(
                *(engine.generate(f"q{i}", 5 + i, ignore_eos=True) for i in range(6))
            )
            with pytest.raises(ValueError):
                engine.stream("x" * 2000, 4)  # rejected: longer than the model's context
            await until(lambda: idle(engine))
            sampler = Sampler([HarnessSource(engine.metrics), TorchAllocatorSource()], interval=1)
            client = TestClient(TestServer(build_app(sampler)))
            await client.start_server()
            try:
                await sampler.cycle()
                text = await (await client.get("/metrics")).text()
                om = await client.get("/metrics", headers={"Accept": CONTENT_TYPE_OPENMETRICS})
                om_text = await om.text()
            finally:
                await client.close()
            return done, text, om_text

    done, text, om_text = run(scenario())
    m = parse_metrics(text)

    def one(name, **labels):
        found = series(m, name, **labels)
        assert len(found) == 1, (name, labels, found)
        return found.popitem()[1]

    assert one("exporter_source_up", source="harness") == 1
    assert one("exporter_source_up", source="torch") == 1
    assert not [k for k in m if k[0].startswith("torch_cuda_")]  # absent on CPU
    assert one("inference_ready") == 1
    assert one("inference_model_info", model="tiny", dtype="float32", device="cpu") == 1
    outcomes = {dict(k[1])["outcome"]: v for k, v in series(m, "inference_requests_total").items()}
    assert outcomes == {
        "ok": 6,
        "rejected": 1,
        "shed": 0,
        "timeout": 0,
        "error": 0,
        "cancelled": 0,
    }
    assert one("inference_time_to_first_token_seconds_count") == 6
    assert one("inference_time_to_first_token_seconds_bucket", le="+Inf") == 6
    assert one("inference_time_to_first_token_seconds_sum") == pytest.approx(
        sum(d.ttft_seconds for d in done)
    )
    assert one("inference_time_per_output_token_seconds_count") == sum(4 + i for i in range(6))
    assert one("inference_request_duration_seconds_count") == 6
    assert one("inference_queue_duration_seconds_count") == 6
    assert one("inference_generation_tokens_total") == sum(5 + i for i in range(6))
    assert one("inference_prompt_tokens_total") == sum(d.prompt_tokens for d in done)
    assert one("inference_preemptions_total") == 0
    assert one("inference_kv_cache_blocks", state="used") == 0
    assert one("inference_kv_cache_blocks", state="free") == 64
    assert one("inference_kv_cache_utilization_ratio") == 0
    assert one("inference_requests_running") == one("inference_requests_waiting") == 0

    om_families = {f.name: f for f in parse_openmetrics(om_text)}
    ttft = om_families["inference_time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    assert [s.value for s in ttft.samples if s.name.endswith("_count")] == [6]

    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
