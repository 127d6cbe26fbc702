"""Continuous batching over a paged KV cache (torch-free).

Each step, every running sequence gets the slot its next token needs (a new block only when
its last block is full); when the pool runs dry, the newest running sequence is preempted: its
blocks are freed and it goes back to the front of the queue, to be recomputed from its tokens
when blocks allow. Then, if nothing had to be preempted, waiting sequences are admitted in
arrival order while blocks, the batch size and the prefill token budget allow.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from exporter.harness.block_allocator import BlockAllocator
from exporter.harness.sequence import Sequence


@dataclass
class Schedule:
    """What one step computes: prompts to prefill, sequences to decode, and who was preempted."""

    prefill: list[Sequence] = field(default_factory=list)
    decode: list[Sequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.prefill and not self.decode


class Scheduler:
    """Owns the waiting queue, the running batch, and every sequence's block table."""

    def __init__(
        self,
        allocator: BlockAllocator,
        block_size: int,
        *,
        max_num_seqs: int = 64,
        max_num_batched_tokens: int = 2048,
        watermark: float = 0.01,
    ) -> None:
        self.allocator = allocator
        self.block_size = block_size
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        # Blocks admission keeps free, so a new prompt does not force an immediate preemption.
        self.watermark_blocks = int(allocator.num_total * watermark)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    @property
    def max_tokens_per_sequence(self) -> int:
        """The longest sequence the pool can ever hold on its own."""
        return (self.allocator.num_total - self.watermark_blocks) * self.block_size

    def add(self, seq: Sequence) -> None:
        if seq.num_prompt + seq.max_tokens > self.max_tokens_per_sequence:
            raise ValueError(
                f"{seq.num_prompt} prompt + {seq.max_tokens} new tokens exceed the KV cache "
                f"({self.max_tokens_per_sequence} tokens)"
            )
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def stored_tokens(self) -> int:
        """Tokens whose K and V are in the cache now."""
        return sum(seq.num_cached for seq in self.running)

    def schedule(self) -> Schedule:
        out = Schedule()
        self._schedule_decodes(out)
        if not out.preempted:
            self._admit(out)
        return out

    def remove(self, seq: Sequence) -> None:
        """Take `seq` out (finished, aborted, timed out or failed) and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self._release(seq)

    def _schedule_decodes(self, out: Schedule) -> None:
        queue = deque(self.running)  # oldest first
        while queue:
            seq: Sequence | None = queue.popleft()
            while seq is not None and not self._reserve(seq):
                victim = queue.pop() if queue else seq  # the newest; itself when it is the last
                self._release(victim)
                victim.preemptions += 1
                out.preempted.append(victim)
                if victim is seq:
                    seq = None
            if seq is not None:
                out.decode.append(seq)
        self.running = list(out.decode)
        for victim in out.preempted:  # newest first: the oldest ends up at the front
            self.waiting.appendleft(victim)

    def _admit(self, out: Schedule) -> None:
        budget = self.max_num_batched_tokens
        while self.waiting and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            new_tokens = seq.num_tokens - seq.num_cached
            if out.prefill and new_tokens > budget:
                break
            need = self.blocks_for(seq.num_tokens) - len(seq.block_table)
            if self.allocator.num_free - need < self.watermark_blocks:
                break
            for _ in range(need):
                seq.block_table.append(self.allocator.allocate())
            self.waiting.popleft()
            self.running.append(seq)
            out.prefill.append(seq)
            budget -= new_tokens

    def _reserve(self, seq: Sequence) -> bool:
        """Make room for every token of `seq` (a new block only when the last one is full)."""
        if len(seq.block_table) >= self.blocks_for(seq.num_tokens):
            return True
        if self.allocator.num_free == 0:
            return False
        seq.block_table.append(self.allocator.allocate())
        return True

    def _release(self, seq: Sequence) -> None:
        self.allocator.free(seq.block_table)
        seq.block_table = []
        seq.num_cached = 0
