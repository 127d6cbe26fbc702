"""The engine on its thread, driven from asyncio: generation, streaming, preemption, aborts,
deadlines, failures, and that no KV block is ever leaked."""

import asyncio
import contextlib
import random
import threading

import pytest

from exporter.harness.config import PRESETS, EngineConfig, KVCacheMemory, ModelConfig
from exporter.harness.engine import (
    Engine,
    EngineError,
    RequestCancelled,
    RequestRejected,
    RequestTimeout,
)
from exporter.harness.tokenizer import ByteTokenizer
from exporter.harness.weights import WeightsError, load_weights, save_weights, seeded_model
from tests.harness_helpers import idle, run, tiny_engine, torch, until


def test_generate_and_stream_give_the_same_greedy_tokens_and_text():
    async def scenario():
        async with tiny_engine() as engine:
            done = await engine.generate("Hello, wörld", 24, ignore_eos=True)
            chunks = [c async for c in engine.stream("Hello, wörld", 24, ignore_eos=True)]
            return done, chunks

    done, chunks = run(scenario())
    assert len(done.token_ids) == 24 and done.finish_reason == "length"
    assert done.prompt_tokens == len("Hello, wörld".encode()) + 1  # bytes and BOS
    assert [c.token_id for c in chunks] == done.token_ids
    assert "".join(c.text for c in chunks) == done.text
    assert [c.finish_reason for c in chunks] == [None] * 23 + ["length"]
    assert done.ttft_seconds > 0 and len(done.token_gaps) == 23


def test_preemption_is_counted_and_every_request_completes_with_its_own_tokens():
    prompts = [f"request {i}: " + "x" * (3 * i) for i in range(8)]
    new_tokens = 40

    async def scenario():
        # 12 blocks of 16 = 192 token slots; 8 requests grow to 50-70 tokens each.
        async with tiny_engine(blocks=12) as engine:
            alone = [await engine.generate(p, new_tokens, ignore_eos=True) for p in prompts]
            assert engine.metrics.snapshot().preemptions == 0
            together = await asyncio.gather(
                *(engine.generate(p, new_tokens, ignore_eos=True) for p in prompts)
            )
            await until(lambda: idle(engine))
            return alone, together, engine.metrics.snapshot(), engine.core.scheduler.allocator

    alone, together, metrics, allocator = run(scenario())
    preempted = sum(c.preemptions for c in together)
    assert preempted > 0
    assert metrics.preemptions == preempted
    assert all(len(c.token_ids) == new_tokens for c in together)
    # recomputed after preemption, a request still produces exactly what it does alone
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert metrics.outcomes["ok"] == 2 * len(prompts)
    assert allocator.num_free == allocator.num_total


def test_no_block_leaks_after_mixed_finished_aborted_timed_out_and_preempted_requests():
    rng = random.Random(7)

    async def finish(engine, i):
        await engine.generate(f"finish {i}", rng.randint(1, 60), ignore_eos=True)
        return "ok"

    async def cancel_consumer(engine, i):
        stream = engine.stream(f"cancel {i}", 200, ignore_eos=True)

        async def consume():
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(rng.uniform(0, 0.03))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return "cancelled" if stream.completion is None else "ok"

    async def abort_from_elsewhere(engine, i):
        stream = engine.stream(f"abort {i}", 200, ignore_eos=True)
        await anext(stream)
        engine.abort(stream.request_id)  # as another task or thread would
        with pytest.raises(RequestCancelled):
            async for _ in stream:
                pass
        return "cancelled"

    async def close_early(engine, i):
        async with engine.stream(f"close {i}", 200, ignore_eos=True) as stream:
            async for _ in stream:
                break
        return "cancelled"

    async def time_out(engine, i):
        with pytest.raises(RequestTimeout):
            await engine.generate(f"late {i}", 250, timeout=0.02, ignore_eos=True)
        return "timeout"

    async def too_long(engine, i):
        with pytest.raises(RequestRejected):
            await engine.generate("x" * 1000, 100)
        return "rejected"

    kinds = [finish] * 20 + [cancel_consumer, abort_from_elsewhere, close_early, time_out] * 4
    kinds += [too_long] * 2
    rng.shuffle(kinds)

    async def scenario():
        async with tiny_engine(blocks=20) as engine:  # small: preemption on the way
            ended = await asyncio.gather(*(kind(engine, i) for i, kind in enumerate(kinds)))
            await until(lambda: idle(engine))
            return engine, ended

    engine, ended = run(scenario())
    allocator = engine.core.scheduler.allocator
    assert allocator.num_free == allocator.num_total == 20
    assert engine.core.sequences == {} and engine._requests == {}
    metrics = engine.metrics.snapshot()
    assert metrics.preemptions > 0
    assert metrics.kv.blocks_used == 0 and metrics.running == metrics.waiting == 0
    for outcome in ("ok", "cancelled", "timeout", "rejected"):
        assert metrics.outcomes[outcome] == ended.count(outcome), outcome
    assert sum(metrics.outcomes.values()) == len(kinds)


def test_a_deadline_ends_a_queued_and_a_running_request_and_frees_their_blocks():
    async def scenario():
        async with tiny_engine(max_num_seqs=1) as engine:
            first = asyncio.create_task(engine.generate("first", 300, ignore_eos=True))
            await until(lambda: engine.stats.running == 1)
            with pytest.raises(RequestTimeout, match="0 of 5 tokens"):
                await engine.generate("queued", 5, timeout=0.02)  # never gets a slot in time
            done = await first
            with pytest.raises(RequestTimeout):
                await engine.generate("running", 900, timeout=0.05, ignore_eos=True)
            await until(lambda: idle(engine))
            return done, engine.metrics.snapshot()

    done, metrics = run(scenario())
    assert len(done.token_ids) == 300
    assert metrics.outcomes["timeout"] == 2 and metrics.outcomes["ok"] == 1


def test_cancelling_the_consumer_aborts_the_request_and_frees_its_blocks():
    async def scenario():
        async with tiny_engine() as engine:
            first_token = asyncio.Event()

            async def consume():
                async for _ in engine.stream("a client that goes away", 900, ignore_eos=True):
                    first_token.set()

            task = asyncio.create_task(consume())
            await first_token.wait()
            assert engine.stats.kv_blocks_used > 0
            task.cancel()
            await until(lambda: idle(engine))
            return engine.metrics.snapshot()

    metrics = run(scenario())
    assert metrics.outcomes["cancelled"] == 1 and metrics.outcomes["ok"] == 0
    assert metrics.generation_tokens < 900


def test_the_model_step_runs_on_the_engine_thread_while_the_loop_keeps_going():
    async def scenario():
        async with tiny_engine() as engine:
            threads = set()
            runner = engine.core.runner

            class Recording:
                def run(self, seqs):
                    threads.add((threading.current_thread().name, torch.get_num_threads()))
                    return runner.run(seqs)

            engine.core.runner = Recording()
            ticks = 0
            job = asyncio.create_task(engine.generate("busy", 400, ignore_eos=True))
            while not job.done():
                ticks += 1
                await asyncio.sleep(0.001)
            await job
            return threads, ticks, threading.current_thread().name

    threads, ticks, loop_thread = run(scenario())
    # on the engine thread, with one intra-op thread (EngineConfig.cpu_threads)
    assert threads == {("inference-engine", 1)} and loop_thread != "inference-engine"
    assert ticks >= 3  # the loop kept running callbacks during the 400 steps


def test_a_failing_model_step_fails_its_requests_frees_their_blocks_and_the_engine_goes_on():
    async def scenario():
        async with tiny_engine() as engine:
            runner = engine.core.runner
            calls = 0

            class FailsOnce:
                def run(self, seqs):
                    nonlocal calls
                    calls += 1
                    if calls == 3:
                        raise RuntimeError("CUDA error: an illegal memory access was encountered")
                    return runner.run(seqs)

            engine.core.runner = FailsOnce()
            with pytest.raises(EngineError, match="illegal memory access"):
                await engine.generate("doomed", 10, ignore_eos=True)
            await until(lambda: idle(engine))
            after = await engine.generate("fine", 10, ignore_eos=True)
            return after, engine.metrics.snapshot()

    after, metrics = run(scenario())
    assert len(after.token_ids) == 10
    assert metrics.outcomes["error"] == 1 and metrics.outcomes["ok"] == 1


def test_ready_after_warm_up_which_the_metrics_do_not_count():
    async def scenario():
        engine = tiny_engine()
        before = engine.readiness()
        engine.start()
        await engine.wait_ready(timeout=30)
        during = engine.readiness(), engine.metrics.snapshot()
        await asyncio.to_thread(engine.stop)
        return before, during, engine.readiness(), engine.metrics.snapshot()

    before, (ready, metrics), after, stopped = run(scenario())
    assert before[0] is False and "loading" in before[1][0]
    assert ready == (True, [])
    assert metrics.ready and metrics.model is not None
    assert (metrics.model.model, metrics.model.dtype, metrics.model.device) == (
        "tiny",
        "float32",
        "cpu",
    )
    assert metrics.generation_tokens == metrics.prompt_tokens == 0  # warm-up not counted
    assert sum(metrics.outcomes.values()) == 0
    assert metrics.kv is not None and metrics.kv.blocks_used == 0
    assert after[0] is False and not stopped.ready


@pytest.mark.parametrize(
    "config,message",
    [
        (dict(weights="/nonexistent/model.safetensors"), "is not a file"),
        (dict(kv_cache_memory=KVCacheMemory(bytes=100)), "holds no KV block"),
        (dict(kv_cache_memory=KVCacheMemory(fraction=0.5)), "fraction of free CUDA memory"),
    ],
)
def test_a_failed_start_is_reported_by_wait_ready_and_readiness(config, message):
    async def scenario():
        engine = Engine(EngineConfig(preset="tiny", device="cpu", **config))
        engine.start()
        with pytest.raises(EngineError, match=message):
            await engine.wait_ready(timeout=30)
        with pytest.raises(EngineError):
            await engine.generate("anything", 4)
        return engine.readiness(), engine.metrics.snapshot()

    (ready, reasons), metrics = run(scenario())
    assert not ready and message in reasons[0]
    assert not metrics.ready and metrics.failed


def test_requests_that_can_never_be_served_are_rejected_at_once_and_counted():
    async def scenario():
        async with tiny_engine(blocks=8) as engine:
            for prompt, max_tokens, match in [
                ("x" * 1030, 4, "context of 1024"),
                ("short", 200, "exceed the KV cache"),  # 8 blocks of 16 = 128 tokens
                ("short", 0, "max_tokens"),
                ([1, 2, 999], 4, "token ids"),
            ]:
                with pytest.raises(RequestRejected, match=match):
                    engine.stream(prompt, max_tokens)
            return engine.metrics.snapshot(), engine.stats

    metrics, stats = run(scenario())
    assert metrics.outcomes["rejected"] == 4
    assert stats.waiting == stats.running == 0


def test_weights_from_a_safetensors_file_replace_the_seeded_ones(tmp_path):
    path = tmp_path / "tiny-seed5.safetensors"
    save_weights(seeded_model(PRESETS["tiny"], seed=5), path)

    async def generate(**config):
        async with tiny_engine(**config) as engine:
            return (await engine.generate("same weights?", 16, ignore_eos=True)).token_ids

    from_file = run(generate(seed=0, weights=str(path)))
    assert from_file == run(generate(seed=5))
    assert from_file != run(generate(seed=0))


def test_a_weights_file_of_another_shape_is_refused_with_the_reason(tmp_path):
    other = ModelConfig(
        "other", dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64, max_seq_len=64
    )
    path = tmp_path / "other.safetensors"
    save_weights(seeded_model(other, seed=0), path)
    with pytest.raises(
        WeightsError, match=r"has shape \(\d+, 32\), the tiny preset expects \(\d+, 64\)"
    ):
        load_weights(seeded_model(PRESETS["tiny"], seed=0), path)
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="is not a safetensors weights file"):
        load_weights(seeded_model(PRESETS["tiny"], seed=0), tmp_path / "garbage.safetensors")


def test_the_stream_decoder_never_splits_a_character():
    tokenizer = ByteTokenizer()
    text = "naïve € 😀 done"
    ids = tokenizer.encode(text)
    decoder = tokenizer.stream_decoder()
    pieces = [decoder.feed([i]) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text == tokenizer.decode(ids)
    assert "\ufffd" not in "".join(pieces)
    assert ids[0] == tokenizer.bos and max(ids[1:]) < 256


def test_sampling_with_a_temperature_is_seeded_and_differs_from_greedy():
    async def generate(seed, temperature):
        async with tiny_engine(seed=seed) as engine:
            c = await engine.generate("sample", 32, temperature=temperature, ignore_eos=True)
            return c.token_ids

    hot = run(generate(1, 1.0))
    assert hot == run(generate(1, 1.0))  # same seed, same draw
    assert hot != run(generate(1, 0.0))


def test_stopping_the_engine_cancels_requests_in_flight():
    async def scenario():
        engine = tiny_engine()
        engine.start()
        await engine.wait_ready()
        job = asyncio.create_task(engine.generate("cut short", 900, ignore_eos=True))
        await until(lambda: engine.stats.running == 1)
        await asyncio.to_thread(engine.stop)
        with pytest.raises(RequestCancelled, match="stopped"):
            await job
        with pytest.raises(EngineError, match="not running"):
            engine.stream("too late", 4)
        return engine.metrics.snapshot(), engine.core.scheduler.allocator

    metrics, allocator = run(scenario())
    assert metrics.outcomes["cancelled"] == 1 and not metrics.ready
    assert allocator.num_free == allocator.num_total
