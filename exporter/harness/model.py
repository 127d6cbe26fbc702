"""A decoder-only transformer: RMSNorm, rotary positions, grouped-query attention, gated MLP.

`forward` is the serving path: it writes the new tokens' K/V into the paged cache and attends
through block tables. `reference_logits` runs the same weights with a plain contiguous causal
attention and no cache: the reference the paged path is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from exporter.harness.attention import AttentionBatch, paged_attention, write_kv
from exporter.harness.config import ModelConfig
from exporter.harness.kv_cache import KVCache


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half form), tables in float32."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x `[B, T, heads, head_dim]`, positions `[B, T]`."""
        cos = self.cos[positions].unsqueeze(2)  # [B, T, 1, D/2]
        sin = self.sin[positions].unsqueeze(2)
        x32 = x.float()
        x1, x2 = x32.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def qkv(
        self, x: torch.Tensor, positions: torch.Tensor, rotary: Rotary
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q = rotary(self.wq(x).view(b, t, self.n_heads, self.head_dim), positions)
        k = rotary(self.wk(x).view(b, t, self.n_kv_heads, self.head_dim), positions)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        rotary: Rotary,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        batch: AttentionBatch,
    ) -> torch.Tensor:
        q, k, v = self.qkv(x, positions, rotary)
        write_kv(k_cache, v_cache, k, v, batch)
        out = paged_attention(q, k_cache, v_cache, batch)
        return self.wo(out.flatten(2))

    def reference(self, x: torch.Tensor, positions: torch.Tensor, rotary: Rotary) -> torch.Tensor:
        """Contiguous causal attention over the whole sequence, K/V heads repeated per group."""
        q, k, v = self.qkv(x, positions, rotary)
        group = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(group, dim=2)
        v = v.repeat_interleave(group, dim=2)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )
        return self.wo(out.transpose(1, 2).flatten(2))


class GatedMLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w_up = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w_down = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = GatedMLP(cfg)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        batch: AttentionBatch,
        last: torch.Tensor,
    ) -> torch.Tensor:
        """Logits `[B, vocab]` of row b's token at index `last[b]`, writing K/V to `cache`."""
        h = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            attn = block.attn(
                block.attn_norm(h), positions, self.rotary, cache.k[i], cache.v[i], batch
            )
            h = h + attn
            h = h + block.mlp(block.mlp_norm(h))
        h = h[torch.arange(h.shape[0], device=h.device), last]
        return self.lm_head(self.norm(h))

    def reference_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits `[B, T, vocab]` for every position, without any cache."""
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        h = self.embed(tokens)
        for block in self.blocks:
            h = h + block.attn.reference(block.attn_norm(h), positions, self.rotary)
            h = h + block.mlp(block.mlp_norm(h))
        return self.lm_head(self.norm(h))
