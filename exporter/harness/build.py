"""Assembling an engine core from its settings: device, dtype, model, KV pool, scheduler."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from exporter.harness.block_allocator import BlockAllocator
from exporter.harness.config import EngineConfig, ModelConfig
from exporter.harness.core import EngineCore
from exporter.harness.kv_cache import KVCache, blocks_for_budget
from exporter.harness.metrics import HarnessMetrics
from exporter.harness.runner import ModelRunner
from exporter.harness.scheduler import Scheduler
from exporter.harness.weights import build_model


@dataclass(frozen=True)
class BuiltCore:
    core: EngineCore
    model_config: ModelConfig
    device: torch.device
    dtype: torch.dtype
    cache: KVCache


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when PyTorch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name} asked for, but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})"
        )
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA, float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def build_core(config: EngineConfig, metrics: HarnessMetrics) -> BuiltCore:
    """Load the model on its device and allocate the whole KV pool (blocking: seconds)."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model_cfg = config.preset_for(device.type)
    if device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    model = build_model(
        model_cfg, seed=config.seed, weights=config.weights, device=device, dtype=dtype
    )
    num_blocks = blocks_for_budget(
        config.kv_budget_for(device.type), model_cfg, config.block_size, dtype, device
    )
    cache = KVCache(model_cfg, num_blocks, config.block_size, dtype, device)
    scheduler = Scheduler(
        BlockAllocator(num_blocks),
        config.block_size,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
    )
    core = EngineCore(
        ModelRunner(model, cache, device, seed=config.seed),
        scheduler,
        metrics,
        max_seq_len=model_cfg.max_seq_len,
        vocab_size=model_cfg.vocab_size,
    )
    return BuiltCore(core, model_cfg, device, dtype, cache)
