"""The free list of KV cache blocks (torch-free: block ids only, the tensors live in kv_cache)."""

from __future__ import annotations

from collections.abc import Iterable


class OutOfBlocks(Exception):
    """No free block is left in the pool."""


class BlockAllocator:
    """Hands out block ids from a fixed pool and takes them back; catches double frees.

    Only the engine thread touches an allocator; `num_free` and `num_used` are plain ints, so
    reading them from another thread (to shed load) sees a recent value without a lock.
    """

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError("a KV cache needs at least one block")
        self.num_total = num_blocks
        # A stack: the most recently freed block is reused first (it is likely still cached).
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._is_free = bytearray(b"\x01") * num_blocks
        self.num_free = num_blocks

    @property
    def num_used(self) -> int:
        return self.num_total - self.num_free

    def allocate(self) -> int:
        if not self._free:
            raise OutOfBlocks(f"all {self.num_total} KV blocks are in use")
        block = self._free.pop()
        self._is_free[block] = 0
        self.num_free -= 1
        return block

    def free(self, blocks: Iterable[int]) -> None:
        for block in blocks:
            if self._is_free[block]:
                raise ValueError(f"KV block {block} freed twice")
            self._is_free[block] = 1
            self._free.append(block)
            self.num_free += 1
