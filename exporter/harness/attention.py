"""Attention that reads keys and values through block tables (PagedAttention, in plain PyTorch).

The cache of one layer is a pool of blocks `[num_blocks, block_size, kv_heads, head_dim]`; a
sequence's token at position p lives in slot `block_table[p // block_size] * block_size +
p % block_size` of the pool seen flat. Each step writes the new tokens' K/V to their slots, then
every query gathers its sequence's keys through those slot indices. The slot indices and the
mask are computed once per step (`AttentionBatch`) and shared by every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AttentionBatch:
    """Per-step addressing shared by every layer."""

    write_slots: torch.Tensor  # [N] flat slot of each new token (valid tokens only)
    write_rows: torch.Tensor | None  # [N] row of each valid token in the flattened [B*T] batch
    read_slots: torch.Tensor  # [B, L] flat slot of each key position (padding: any slot)
    mask: torch.Tensor  # [B, 1, T, L] True where a query may attend to a key


def build_attention_batch(
    block_tables: Sequence[Sequence[int]],
    query_starts: Sequence[int],
    query_lens: Sequence[int],
    block_size: int,
    device: torch.device,
) -> AttentionBatch:
    """Addressing for B sequences whose queries are positions [start, start + len) each.

    The context of a sequence is every position before the end of its queries; queries are
    padded to the longest one (padded rows see key 0 only, so they never produce NaN).
    """
    batch = len(block_tables)
    longest = max(query_lens)
    context = max(s + n for s, n in zip(query_starts, query_lens, strict=True))
    max_blocks = -(-context // block_size)
    tables: list[list[int]] = []
    q_pos: list[list[int]] = []
    write_slots: list[int] = []
    write_rows: list[int] = []
    for b, (table, start, n) in enumerate(zip(block_tables, query_starts, query_lens, strict=True)):
        used = min(len(table), max_blocks)
        tables.append([*table[:used], *([0] * (max_blocks - used))])
        q_pos.append([*range(start, start + n), *([0] * (longest - n))])
        for i, p in enumerate(range(start, start + n)):
            write_slots.append(table[p // block_size] * block_size + p % block_size)
            write_rows.append(b * longest + i)
    table_t = torch.tensor(tables, dtype=torch.long, device=device)
    q_pos_t = torch.tensor(q_pos, dtype=torch.long, device=device)
    key_pos = torch.arange(context, device=device)
    read_slots = table_t[:, key_pos // block_size] * block_size + key_pos % block_size
    mask = (key_pos[None, None, :] <= q_pos_t[:, :, None]).unsqueeze(1)
    all_valid = len(write_rows) == batch * longest
    return AttentionBatch(
        write_slots=torch.tensor(write_slots, dtype=torch.long, device=device),
        write_rows=None if all_valid else torch.tensor(write_rows, dtype=torch.long, device=device),
        read_slots=read_slots,
        mask=mask,
    )


def write_kv(
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    batch: AttentionBatch,
) -> None:
    """Store new keys and values `[B, T, kv_heads, head_dim]` into their slots of one layer."""
    kv_heads, head_dim = k.shape[-2:]
    k = k.reshape(-1, kv_heads, head_dim)
    v = v.reshape(-1, kv_heads, head_dim)
    if batch.write_rows is not None:
        k = k.index_select(0, batch.write_rows)
        v = v.index_select(0, batch.write_rows)
    k_cache.view(-1, kv_heads, head_dim).index_copy_(0, batch.write_slots, k)
    v_cache.view(-1, kv_heads, head_dim).index_copy_(0, batch.write_slots, v)


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    batch: AttentionBatch,
) -> torch.Tensor:
    """Attention of queries `[B, T, heads, head_dim]` over keys read through the block tables.

    Grouped-query: query head h uses key/value head h // (heads / kv_heads). The query heads of
    a group are folded into the query length, so K/V are gathered once per KV head, not copied.
    """
    b, t, heads, head_dim = q.shape
    kv_heads = k_cache.shape[-2]
    group = heads // kv_heads
    length = batch.read_slots.shape[1]
    slots = batch.read_slots.reshape(-1)
    k = k_cache.view(-1, kv_heads, head_dim).index_select(0, slots)
    v = v_cache.view(-1, kv_heads, head_dim).index_select(0, slots)
    k = k.view(b, length, kv_heads, head_dim).transpose(1, 2)  # [B, KVH, L, D]
    v = v.view(b, length, kv_heads, head_dim).transpose(1, 2)
    qg = q.view(b, t, kv_heads, group, head_dim).permute(0, 2, 3, 1, 4)  # [B, KVH, G, T, D]
    qg = qg.reshape(b, kv_heads, group * t, head_dim)
    mask = batch.mask.unsqueeze(2).expand(b, 1, group, t, length).reshape(b, 1, group * t, length)
    out = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask)  # [B, KVH, G*T, D]
    out = out.view(b, kv_heads, group, t, head_dim).permute(0, 3, 1, 2, 4)
    return out.reshape(b, t, heads, head_dim)
