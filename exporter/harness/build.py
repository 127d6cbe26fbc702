"""Assembling an engine core from its settings: device, dtype, model, KV pool, scheduler.

`plan_build` checks the settings against this machine without loading anything (the device
exists, the weights file is safetensors of the preset's shapes, the KV pool holds a block):
`serve` calls it before it listens, so a configuration that can never run exits 2 in one line
instead of failing on the engine thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from exporter.harness.block_allocator import BlockAllocator
from exporter.harness.config import EngineConfig, ModelConfig
from exporter.harness.core import EngineCore
from exporter.harness.kv_cache import KVCache, blocks_for_budget, bytes_per_block
from exporter.harness.metrics import HarnessMetrics
from exporter.harness.runner import ModelRunner
from exporter.harness.scheduler import Scheduler
from exporter.harness.weights import build_model, check_weights


class ConfigError(ValueError):
    """Settings that can never run on this machine; the message is one line saying why."""


@dataclass(frozen=True)
class BuiltCore:
    core: EngineCore
    model_config: ModelConfig
    device: torch.device
    dtype: torch.dtype
    cache: KVCache


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when PyTorch sees a GPU, else the CPU. ConfigError for a missing GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--harness.device {name}: PyTorch sees no CUDA device (torch "
                f"{torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); "
                "use --harness.device cpu or auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--harness.device {name}: PyTorch sees {count} CUDA device(s)")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on CUDA, float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


@dataclass(frozen=True)
class BuildPlan:
    """What `build_core` will build here, checked without loading or allocating anything."""

    device: torch.device
    dtype: torch.dtype
    model_config: ModelConfig


def plan_build(config: EngineConfig) -> BuildPlan:
    """Check the settings on this machine; ConfigError (one line) for what can never run."""
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    model_cfg = config.preset_for(device.type)
    if config.weights:
        try:
            check_weights(config.weights, model_cfg)
        except ValueError as exc:
            raise ConfigError(f"--harness.weights: {exc}") from None
    budget = config.kv_budget_for(device.type)
    if budget.fraction is not None and device.type != "cuda":
        raise ConfigError(
            f"--harness.kv-cache-memory {budget.fraction:g} is a fraction of free CUDA memory, "
            f"but the harness runs on {device.type}: give bytes, like 64MiB"
        )
    per_block = bytes_per_block(model_cfg, config.block_size, dtype)
    if budget.bytes is not None and budget.bytes < per_block:
        raise ConfigError(
            f"--harness.kv-cache-memory ({budget.bytes} bytes) holds no KV block: one block of "
            f"{config.block_size} tokens of the {model_cfg.name} model in "
            f"{str(dtype).removeprefix('torch.')} takes {per_block} bytes"
        )
    return BuildPlan(device, dtype, model_cfg)


def build_core(config: EngineConfig, metrics: HarnessMetrics) -> BuiltCore:
    """Load the model on its device and allocate the whole KV pool (blocking: seconds)."""
    plan = plan_build(config)
    device, dtype, model_cfg = plan.device, plan.dtype, plan.model_config
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
