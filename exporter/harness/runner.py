"""One model step: sequences in, one sampled token per sequence out.

Every sequence in the batch processes its tokens whose K/V are not cached yet: the whole prompt
for a new (or preempted and recomputed) sequence, the last token for a decoding one.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq

import torch

from exporter.harness.attention import build_attention_batch
from exporter.harness.kv_cache import KVCache
from exporter.harness.model import Transformer
from exporter.harness.sequence import Sequence


class ModelRunner:
    def __init__(
        self,
        model: Transformer,
        cache: KVCache,
        device: torch.device,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.cache = cache
        self.block_size = cache.block_size
        self.device = device
        self._generator = torch.Generator(device=device).manual_seed(seed)

    def run(self, seqs: Seq[Sequence]) -> list[int]:
        """Compute the uncached tokens of each sequence and sample its next token."""
        starts = [s.num_cached for s in seqs]
        lens = [s.num_tokens - s.num_cached for s in seqs]
        longest = max(lens)
        tokens = [
            [*s.token_ids[s.num_cached :], *([0] * (longest - n))]
            for s, n in zip(seqs, lens, strict=True)
        ]
        positions = [
            [*range(a, a + n), *([0] * (longest - n))] for a, n in zip(starts, lens, strict=True)
        ]
        batch = build_attention_batch(
            [s.block_table for s in seqs], starts, lens, self.block_size, self.device
        )
        logits = self.model(
            torch.tensor(tokens, dtype=torch.long, device=self.device),
            torch.tensor(positions, dtype=torch.long, device=self.device),
            self.cache,
            batch,
            torch.tensor([n - 1 for n in lens], dtype=torch.long, device=self.device),
        )
        return sample(logits, [s.temperature for s in seqs], self._generator)


def sample(logits: torch.Tensor, temperatures: Seq[float], generator: torch.Generator) -> list[int]:
    """Greedy where the temperature is 0, softmax sampling elsewhere."""
    greedy = logits.argmax(dim=-1)
    if not any(temperatures):
        return greedy.tolist()
    temps = torch.tensor(temperatures, dtype=torch.float32, device=logits.device)
    scaled = logits.float() / temps.clamp_min(1e-5).unsqueeze(1)
    drawn = torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(1)
    return torch.where(temps > 0, drawn, greedy).tolist()
