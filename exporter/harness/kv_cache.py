"""The KV block pool: one preallocated tensor per K and V, and how many blocks a budget buys."""

from __future__ import annotations

import torch

from exporter.harness.config import KVCacheMemory, ModelConfig


def bytes_per_block(model: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
    """K and V of `block_size` tokens over every layer."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return block_size * model.kv_bytes_per_token(itemsize)


def blocks_for_budget(
    budget: KVCacheMemory,
    model: ModelConfig,
    block_size: int,
    dtype: torch.dtype,
    device: torch.device,
) -> int:
    """Number of blocks that fit the budget: bytes, or a fraction of the device's free memory."""
    per_block = bytes_per_block(model, block_size, dtype)
    if budget.fraction is not None:
        if device.type != "cuda":
            raise ValueError(
                "a KV cache size given as a fraction of free memory needs CUDA; on "
                f"{device.type} give bytes, like 256MiB"
            )
        free, _total = torch.cuda.mem_get_info(device)
        nbytes = int(free * budget.fraction)
    else:
        assert budget.bytes is not None
        nbytes = budget.bytes
    blocks = nbytes // per_block
    if blocks < 1:
        raise ValueError(
            f"KV cache budget {budget} holds no block of {per_block} bytes "
            f"({block_size} tokens of the {model.name} model)"
        )
    return blocks


class KVCache:
    """`k[layer]` and `v[layer]` are `[num_blocks, block_size, kv_heads, head_dim]` pools."""

    def __init__(
        self,
        model: ModelConfig,
        num_blocks: int,
        block_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (model.n_layers, num_blocks, block_size, model.n_kv_heads, model.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.num_blocks = num_blocks
        self.block_size = block_size

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
