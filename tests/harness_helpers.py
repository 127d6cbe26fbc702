"""Helpers for the harness tests: a tiny CPU engine, a runner for async scenarios, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from exporter.harness.config import PRESETS, EngineConfig, KVCacheMemory
from exporter.harness.engine import Engine
from tests.harness_torch import torch

BLOCK = 16
#: Bytes of one KV block of the tiny preset in float32.
TINY_BLOCK_BYTES = BLOCK * PRESETS["tiny"].kv_bytes_per_token(4)


def tiny_engine(blocks: int = 256, **config: object) -> Engine:
    """An unstarted tiny engine on the CPU with a pool of `blocks` KV blocks."""
    return Engine(
        EngineConfig(
            preset="tiny",
            device="cpu",
            block_size=BLOCK,
            kv_cache_memory=KVCacheMemory(bytes=blocks * TINY_BLOCK_BYTES),
            **config,  # type: ignore[arg-type]
        )
    )


def run(coro, timeout: float = 60.0):
    """Run an async scenario with an overall time limit (a hang fails instead of blocking CI)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def idle(engine: Engine) -> bool:
    """No request left anywhere and every KV block back on the free list."""
    stats = engine.stats
    return stats.running == stats.waiting == stats.kv_blocks_used == 0


__all__ = ["BLOCK", "TINY_BLOCK_BYTES", "idle", "run", "tiny_engine", "torch", "until"]
