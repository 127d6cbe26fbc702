"""Paged attention against a contiguous-cache reference (float32, relative error below 1e-5)."""

import math
import random

import pytest

from exporter.harness.attention import build_attention_batch, paged_attention, write_kv
from exporter.harness.config import PRESETS
from exporter.harness.kv_cache import KVCache
from exporter.harness.weights import seeded_model
from tests.harness_torch import torch

BLOCK = 16
LENGTHS = [37, 50, 5, 64, 17]  # several blocks each, partly filled last blocks, one short
HEADS, KV_HEADS, HEAD_DIM = 8, 2, 32
MAX_REL_ERR = 1e-5


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def reference_attention(q, k, v, positions):
    """Textbook attention of one sequence: q [T, H, D] at `positions` over k, v [L, KVH, D]."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("thd,lhd->htl", q, k) / math.sqrt(q.shape[-1])
    key_pos = torch.arange(k.shape[0])
    visible = key_pos[None, :] <= torch.tensor(positions)[:, None]  # causal
    scores = scores.masked_fill(~visible[None], float("-inf"))
    return torch.einsum("htl,lhd->thd", scores.softmax(-1), v)


def scattered_tables(lengths, num_blocks, rng):
    """Block tables drawn at random from the pool: neighbouring tokens live far apart."""
    free = list(range(num_blocks))
    rng.shuffle(free)
    return [[free.pop() for _ in range(-(-n // BLOCK))] for n in lengths]


@pytest.mark.parametrize(
    "queries",
    [
        pytest.param(lambda n: (0, n), id="prefill"),
        pytest.param(lambda n: (n - 1, 1), id="decode"),
        pytest.param(lambda n: (max(0, n - 7), min(n, 7)), id="chunk"),
    ],
)
def test_paged_attention_equals_contiguous_reference(queries):
    gen = torch.Generator().manual_seed(1)
    rng = random.Random(1)
    num_blocks = 40
    k_cache = torch.zeros(num_blocks, BLOCK, KV_HEADS, HEAD_DIM)
    v_cache = torch.zeros_like(k_cache)
    tables = scattered_tables(LENGTHS, num_blocks, rng)
    keys = [torch.randn(n, KV_HEADS, HEAD_DIM, generator=gen) for n in LENGTHS]
    values = [torch.randn(n, KV_HEADS, HEAD_DIM, generator=gen) for n in LENGTHS]

    # Write every token's K/V through the same addressing the model uses (padded batch).
    longest = max(LENGTHS)
    write = build_attention_batch(tables, [0] * len(LENGTHS), LENGTHS, BLOCK, torch.device("cpu"))
    padded_k = torch.zeros(len(LENGTHS), longest, KV_HEADS, HEAD_DIM)
    padded_v = torch.zeros_like(padded_k)
    for b, n in enumerate(LENGTHS):
        padded_k[b, :n], padded_v[b, :n] = keys[b], values[b]
    write_kv(k_cache, v_cache, padded_k, padded_v, write)

    starts, lens = zip(*(queries(n) for n in LENGTHS), strict=True)
    read = build_attention_batch(tables, starts, lens, BLOCK, torch.device("cpu"))
    q = torch.randn(len(LENGTHS), max(lens), HEADS, HEAD_DIM, generator=gen)
    out = paged_attention(q, k_cache, v_cache, read)

    for b, (start, n) in enumerate(zip(starts, lens, strict=True)):
        positions = list(range(start, start + n))
        expected = reference_attention(q[b, :n], keys[b], values[b], positions)
        assert rel_err(out[b, :n], expected) < MAX_REL_ERR, f"sequence {b}"


def test_padded_queries_never_produce_nan():
    gen = torch.Generator().manual_seed(2)
    k_cache = torch.randn(4, BLOCK, KV_HEADS, HEAD_DIM, generator=gen)
    v_cache = torch.randn_like(k_cache)
    batch = build_attention_batch([[0, 1], [2]], [0, 0], [20, 3], BLOCK, torch.device("cpu"))
    out = paged_attention(
        torch.randn(2, 20, HEADS, HEAD_DIM, generator=gen), k_cache, v_cache, batch
    )
    assert not out.isnan().any()
    assert batch.write_rows is not None and batch.write_rows.numel() == 23  # padding not written


def test_model_paged_prefill_then_decode_matches_the_reference_forward():
    """Two sequences served like the engine does (prefill, then one token a step through the
    paged cache) give the logits of a plain causal forward over the whole sequence."""
    cfg = PRESETS["tiny"]
    model = seeded_model(cfg, seed=3).eval()
    cache = KVCache(cfg, num_blocks=16, block_size=BLOCK, dtype=torch.float32, device="cpu")
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, cfg.vocab_size, (n,), generator=gen).tolist() for n in (21, 6)]
    tables = [[9, 2, 14, 5], [11, 0, 7]]  # non-contiguous; 4 and 3 blocks
    seqs = [list(p) for p in prompts]
    cached = [0, 0]
    steps = 0
    with torch.inference_mode():
        while steps < 30:  # 21 + 30 = 51 tokens: four blocks of 16
            starts = cached
            lens = [len(s) - c for s, c in zip(seqs, cached, strict=True)]
            longest = max(lens)
            tokens = torch.tensor(
                [[*s[c:], *[0] * (longest - n)] for s, c, n in zip(seqs, cached, lens, strict=True)]
            )
            positions = torch.tensor(
                [
                    [*range(c, c + n), *[0] * (longest - n)]
                    for c, n in zip(cached, lens, strict=True)
                ]
            )
            batch = build_attention_batch(tables, starts, lens, BLOCK, torch.device("cpu"))
            logits = model(tokens, positions, cache, batch, torch.tensor([n - 1 for n in lens]))
            for b, s in enumerate(seqs):
                expected = model.reference_logits(torch.tensor([s]))[0, -1]
                assert rel_err(logits[b], expected) < MAX_REL_ERR, (steps, b)
            cached = [len(s) for s in seqs]
            for b, s in enumerate(seqs):
                s.append(int(logits[b].argmax()))
            steps += 1
    assert len(seqs[0]) == 51 and len(seqs[1]) == 36
