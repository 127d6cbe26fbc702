"""The figures the harness records: each histogram and counter against the per-request timings
the engine hands its callers, and the KV gauges against the block tables, step by step."""

import asyncio
import math
import time

import pytest

from exporter import catalog
from exporter.harness.block_allocator import BlockAllocator
from exporter.harness.config import PRESETS
from exporter.harness.core import EngineCore
from exporter.harness.kv_cache import KVCache
from exporter.harness.metrics import FOLD_AT, HarnessMetrics, Histogram, KVGauges
from exporter.harness.runner import ModelRunner
from exporter.harness.scheduler import Scheduler
from exporter.harness.sequence import Sequence
from exporter.harness.weights import build_model
from tests.harness_helpers import BLOCK, idle, run, tiny_engine, torch, until


def test_histogram_counts_a_value_equal_to_a_bound_in_that_bucket():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.cumulative() == ((0.1, 2.0), (1.0, 4.0), (math.inf, 5.0))
    assert h.sum == pytest.approx(8.65)


def test_values_are_bucketed_when_read_or_when_too_many_wait():
    h = Histogram((1.0,))
    h.add([0.5] * 10)
    assert h.cumulative() == ((1.0, 10.0), (math.inf, 10.0))
    h.add([2.0] * (FOLD_AT + 5))  # nobody reads: the engine thread folds them itself
    assert len(h._pending) < FOLD_AT
    assert h.cumulative()[-1] == (math.inf, 10.0 + FOLD_AT + 5)
    assert h.sum == pytest.approx(5 + 2 * (FOLD_AT + 5))


def test_an_unknown_outcome_is_refused():
    metrics = HarnessMetrics()
    metrics.count_outcome("shed", 2)
    assert metrics.snapshot().outcomes == {
        "ok": 0,
        "rejected": 0,
        "shed": 2,
        "timeout": 0,
        "error": 0,
        "cancelled": 0,
    }
    with pytest.raises(ValueError, match="unknown outcome"):
        metrics.count_outcome("dropped")


def assert_histogram(buckets, total, values, family):
    assert [b for b, _ in buckets] == [*family.buckets, math.inf]
    for bound, cumulative in buckets:
        assert cumulative == sum(1 for v in values if v <= bound), (family.name, bound)
    assert total == pytest.approx(sum(values), rel=1e-9, abs=1e-12)


def test_latency_histograms_and_token_counters_match_what_each_request_saw():
    lengths = [1, 2, 5, 17, 33, 8, 64, 3, 40, 12]

    async def scenario():
        async with tiny_engine(blocks=24) as engine:  # small enough to preempt and queue
            done = await asyncio.gather(
                *(
                    engine.generate("p" * (7 * i + 1), n, ignore_eos=True)
                    for i, n in enumerate(lengths)
                )
            )
            await until(lambda: idle(engine))
            return done, engine.metrics.snapshot()

    done, m = run(scenario())
    c = catalog
    assert_histogram(
        m.ttft, m.ttft_sum, [d.ttft_seconds for d in done], c.INFERENCE_TIME_TO_FIRST_TOKEN
    )
    gaps = [g for d in done for g in d.token_gaps]
    assert len(gaps) == sum(lengths) - len(lengths)
    assert_histogram(m.tpot, m.tpot_sum, gaps, c.INFERENCE_TIME_PER_OUTPUT_TOKEN)
    assert_histogram(
        m.e2e, m.e2e_sum, [d.duration_seconds for d in done], c.INFERENCE_REQUEST_DURATION
    )
    assert_histogram(
        m.queue, m.queue_sum, [d.queue_seconds for d in done], c.INFERENCE_QUEUE_DURATION
    )
    assert m.prompt_tokens == sum(d.prompt_tokens for d in done)  # recomputes not counted twice
    assert m.generation_tokens == sum(lengths)
    assert m.outcomes["ok"] == len(lengths)
    assert m.preemptions == sum(d.preemptions for d in done)
    assert any(d.queue_seconds > 0 for d in done)


def test_kv_gauges_follow_the_block_tables_after_every_step():
    cfg = PRESETS["tiny"]
    device = torch.device("cpu")
    model = build_model(cfg, seed=0, weights=None, device=device, dtype=torch.float32)
    blocks = 5  # every request fits alone, not all together: queueing and preemption
    cache = KVCache(cfg, blocks, BLOCK, torch.float32, device)
    scheduler = Scheduler(BlockAllocator(blocks), BLOCK, watermark=0)
    metrics = HarnessMetrics()
    core = EngineCore(ModelRunner(model, cache, device), scheduler, metrics, max_seq_len=1024)
    for rid, (prompt, new) in enumerate([(20, 30), (5, 40), (40, 3)], start=1):
        ids = [256, *range(1, prompt)]
        core.add(Sequence(rid, ids, prompt, new, time.perf_counter(), ignore_eos=True))

    with torch.inference_mode():
        core.step()
        first = metrics.snapshot()
        checked = 0
        while core.has_work():
            running = list(scheduler.running)
            kv = metrics.snapshot().kv
            assert kv == KVGauges(
                blocks_total=blocks,
                blocks_used=sum(len(s.block_table) for s in running),
                block_size=BLOCK,
                stored_tokens=sum(s.num_cached for s in running),
            )
            # a block is taken only when the previous one is full
            assert kv.blocks_used == sum(-(-s.num_cached // BLOCK) for s in running)
            assert metrics.snapshot().running == len(running)
            assert metrics.snapshot().waiting == len(scheduler.waiting)
            core.step()
            checked += 1

    # First step: prompts of 20 and 5 tokens prefilled (2 + 1 blocks); 40 must wait for 3.
    assert first.kv.blocks_used == 3 and first.kv.stored_tokens == 25
    assert first.kv.utilization == pytest.approx(3 / 5)
    assert first.kv.fragmentation == pytest.approx(1 - 25 / 48)
    assert first.running == 2 and first.waiting == 1
    assert checked > 30
    end = metrics.snapshot()
    assert end.kv.blocks_used == 0 and end.kv.utilization == 0 and end.kv.fragmentation == 0
    assert end.outcomes["ok"] == 3 and end.generation_tokens == 73 and end.preemptions > 0


def test_without_metrics_the_engine_records_nothing_per_request():
    async def scenario():
        async with tiny_engine(record_metrics=False) as engine:
            await engine.generate("quiet", 8, ignore_eos=True)
            return engine.metrics.snapshot(), engine.metrics.enabled

    m, enabled = run(scenario())
    assert not enabled
    assert m.ready and m.model is not None  # readiness and identity still kept
    assert m.generation_tokens == 0 and m.ttft[-1][1] == 0 and m.outcomes["ok"] == 0
