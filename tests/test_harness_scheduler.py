"""The block free list and continuous batching, without a model (torch-free)."""

import pytest

from exporter.harness.block_allocator import BlockAllocator, OutOfBlocks
from exporter.harness.config import EngineConfig, KVCacheMemory, parse_kv_cache_memory
from exporter.harness.scheduler import Scheduler
from exporter.harness.sequence import Sequence

BLOCK = 4


def seq(request_id: int, prompt: int, max_tokens: int = 4) -> Sequence:
    return Sequence(request_id, list(range(1, prompt + 1)), prompt, max_tokens, arrival=0.0)


def run_step(scheduler: Scheduler):
    """What the engine does after the model ran: everything scheduled is cached, one token more."""
    plan = scheduler.schedule()
    for s in [*plan.prefill, *plan.decode]:
        s.num_cached = s.num_tokens
        s.token_ids.append(7)
    return plan


def test_allocator_hands_out_every_block_once_and_refuses_double_frees():
    alloc = BlockAllocator(3)
    blocks = [alloc.allocate() for _ in range(3)]
    assert sorted(blocks) == [0, 1, 2] and alloc.num_free == 0 and alloc.num_used == 3
    with pytest.raises(OutOfBlocks):
        alloc.allocate()
    alloc.free([blocks[1]])
    with pytest.raises(ValueError, match="freed twice"):
        alloc.free([blocks[1]])
    assert alloc.allocate() == blocks[1]  # the freed block comes back
    assert alloc.num_free == 0


def test_a_block_is_taken_only_when_the_previous_one_is_full():
    sched = Scheduler(BlockAllocator(10), BLOCK, watermark=0)
    s = seq(1, prompt=3, max_tokens=20)
    sched.add(s)
    plan = run_step(sched)  # prefill of 3 tokens: one block
    assert plan.prefill == [s] and len(s.block_table) == 1
    history = []
    for _ in range(7):
        run_step(sched)
        history.append((s.num_cached, len(s.block_table)))
    # after each step the table covers exactly the cached tokens: ceil(cached / 4) blocks
    assert history == [(4, 1), (5, 2), (6, 2), (7, 2), (8, 2), (9, 3), (10, 3)]
    assert sched.allocator.num_used == 3


def test_admission_stops_at_the_batch_size_and_the_prefill_budget():
    sched = Scheduler(
        BlockAllocator(100), BLOCK, max_num_seqs=3, max_num_batched_tokens=10, watermark=0
    )
    for i in range(5):
        sched.add(seq(i, prompt=4))
    first = run_step(sched)
    assert [s.request_id for s in first.prefill] == [0, 1]  # 4 + 4 tokens; a third would be 12
    second = run_step(sched)
    assert [s.request_id for s in second.prefill] == [2]  # the batch holds 3
    assert [s.request_id for s in second.decode] == [0, 1]
    assert len(sched.waiting) == 2


def test_a_prompt_longer_than_the_budget_is_still_admitted_alone():
    sched = Scheduler(BlockAllocator(100), BLOCK, max_num_batched_tokens=8, watermark=0)
    sched.add(seq(1, prompt=30))
    assert [s.request_id for s in run_step(sched).prefill] == [1]


def test_when_blocks_run_out_the_newest_are_preempted_and_requeued_oldest_first():
    sched = Scheduler(BlockAllocator(4), BLOCK, watermark=0)
    s1, s2, s3, s4 = (seq(i, prompt=4) for i in (1, 2, 3, 4))
    for s in (s1, s2, s3, s4):
        sched.add(s)
    run_step(sched)  # all four prefilled: every block used and full
    assert sched.allocator.num_free == 0
    plan = run_step(sched)  # each needs a second block
    assert plan.decode == [s1, s2]  # the oldest keep running on the blocks of the newest
    assert plan.preempted == [s4, s3]
    assert list(sched.waiting) == [s3, s4]  # back at the front, oldest first
    assert s4.block_table == [] and s4.num_cached == 0 and s4.preemptions == 1
    assert s4.num_tokens == 5  # its tokens are kept, to be recomputed
    assert sched.allocator.num_used == 4 and len(s1.block_table) == len(s2.block_table) == 2


def test_the_last_running_sequence_preempts_itself_when_nothing_is_left():
    sched = Scheduler(BlockAllocator(2), BLOCK, watermark=0)
    a = seq(1, prompt=4)
    sched.add(a)
    run_step(sched)
    stolen = sched.allocator.allocate()  # as another user of the pool would
    plan = run_step(sched)
    assert plan.decode == [] and plan.preempted == [a]
    assert list(sched.waiting) == [a] and sched.allocator.num_used == 1
    sched.allocator.free([stolen])
    plan = run_step(sched)  # readmitted: its 5 tokens recomputed in one prefill
    assert plan.prefill == [a] and a.num_cached == 5 and len(a.block_table) == 2


def test_a_request_that_can_never_fit_is_refused():
    sched = Scheduler(BlockAllocator(4), BLOCK, watermark=0)
    with pytest.raises(ValueError, match="exceed the KV cache"):
        sched.add(seq(1, prompt=10, max_tokens=7))  # 17 tokens > 16 slots
    sched.add(seq(2, prompt=10, max_tokens=6))


def test_remove_frees_blocks_of_running_and_waiting_sequences():
    sched = Scheduler(BlockAllocator(8), BLOCK, max_num_seqs=1, watermark=0)
    running, waiting = seq(1, prompt=9), seq(2, prompt=3)
    sched.add(running)
    sched.add(waiting)
    run_step(sched)
    assert sched.allocator.num_used == 3
    sched.remove(running)
    sched.remove(waiting)
    assert sched.allocator.num_free == 8 and not sched.has_work()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("256MiB", KVCacheMemory(bytes=256 * 2**20)),
        ("1GiB", KVCacheMemory(bytes=2**30)),
        ("500MB", KVCacheMemory(bytes=500 * 10**6)),
        ("4096", KVCacheMemory(bytes=4096)),
        ("0.3", KVCacheMemory(fraction=0.3)),
        ("1", KVCacheMemory(fraction=1.0)),
    ],
)
def test_parse_kv_cache_memory(text, expected):
    assert parse_kv_cache_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1GiB", "0", "2 parsecs"])
def test_parse_kv_cache_memory_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_kv_cache_memory(text)


def test_engine_config_validates():
    with pytest.raises(ValueError, match="device"):
        EngineConfig(device="tpu")
    with pytest.raises(ValueError, match="preset"):
        EngineConfig(preset="huge")
    assert EngineConfig(device="cuda:1").device == "cuda:1"
    assert EngineConfig().preset_for("cuda").name == "small"
    assert EngineConfig().preset_for("cpu").name == "tiny"
    small = EngineConfig(preset="small").preset_for("cpu")
    assert 90e6 < small.parameters < 110e6  # "around 100M parameters"


def test_the_kv_budget_defaults_by_device():
    assert EngineConfig().kv_budget_for("cuda") == KVCacheMemory(bytes=256 * 2**20)
    assert EngineConfig().kv_budget_for("cpu") == KVCacheMemory(bytes=64 * 2**20)
    given = KVCacheMemory(fraction=0.2)
    assert EngineConfig(kv_cache_memory=given).kv_budget_for("cpu") == given
