"""Model presets and engine settings (torch-free, so the CLI can validate flags without torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.harness.tokenizer import VOCAB_SIZE


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the decoder-only transformer."""

    name: str
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    max_seq_len: int
    vocab_size: int = VOCAB_SIZE
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"{self.name}: dim, n_heads and n_kv_heads do not divide evenly")
        if self.head_dim % 2:
            raise ValueError(f"{self.name}: rotary positions need an even head dimension")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def parameters(self) -> int:
        """Number of weights (embedding and output head untied)."""
        kv_dim = self.n_kv_heads * self.head_dim
        attention = 2 * self.dim * self.dim + 2 * self.dim * kv_dim
        mlp = 3 * self.dim * self.ffn_hidden
        per_layer = attention + mlp + 2 * self.dim
        return self.n_layers * per_layer + 2 * self.vocab_size * self.dim + self.dim

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """K and V of one token over every layer."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype_bytes


#: `tiny` runs anywhere (tests, CI, a CPU node); `small` is about 100M parameters, for a GPU.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        "tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=176, max_seq_len=1024
    ),
    "small": ModelConfig(
        "small", dim=768, n_layers=16, n_heads=12, n_kv_heads=4, ffn_hidden=2048, max_seq_len=2048
    ),
}

PRESET_CHOICES = ("auto", *PRESETS)
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class KVCacheMemory:
    """How much memory the KV block pool takes: a byte count, or a fraction of free CUDA memory."""

    bytes: int | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        if (self.bytes is None) == (self.fraction is None):
            raise ValueError("give either bytes or a fraction")
        if self.bytes is not None and self.bytes <= 0:
            raise ValueError("the KV cache needs a positive number of bytes")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError("a fraction of free memory lies in (0, 1]")

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{self.fraction:g} of free CUDA memory"
        assert self.bytes is not None
        return f"{self.bytes / 2**20:g} MiB"


_SIZE = re.compile(r"^(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]i?b?|b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgt", start=1):
    _SIZE_UNITS.update({_p: 1000**_i, _p + "b": 1000**_i, _p + "i": 1024**_i, _p + "ib": 1024**_i})


def parse_kv_cache_memory(text: str) -> KVCacheMemory:
    """`256MiB`, `1GiB`, `500MB`, `67108864` → bytes; `0.3` (a number up to 1) → a fraction."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(
            f"invalid KV cache size {text!r}: use bytes with a unit (256MiB, 2GiB) or a fraction "
            "of free CUDA memory (0.3)"
        )
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    if not unit and 0 < number <= 1:
        return KVCacheMemory(fraction=number)
    return KVCacheMemory(bytes=int(number * _SIZE_UNITS[unit]))


#: KV pool when none is given: a canary's share of a GPU; on CPU the tiny preset needs little.
DEFAULT_KV_CACHE_BYTES = {"cuda": 256 * 2**20, "cpu": 64 * 2**20}


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine needs to build itself; defaults suit a canary on a shared GPU."""

    preset: str = "auto"  # auto: small on CUDA, tiny on CPU
    weights: str | None = None  # a local .safetensors file; None: random weights from `seed`
    block_size: int = 16
    kv_cache_memory: KVCacheMemory | None = None  # None: DEFAULT_KV_CACHE_BYTES[device type]
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    max_num_seqs: int = 64  # running requests per step
    max_num_batched_tokens: int = 2048  # prompt tokens prefilled per step (one prompt always)
    seed: int = 0
    # PyTorch intra-op threads of the engine thread on CPU (None: torch's choice). One: a canary
    # must not take the node's cores, and on models this small more threads cost more (10x
    # slower with 2 threads on a busy 2-core machine). Set from the engine thread: with
    # OpenMP other threads keep their own setting.
    cpu_threads: int | None = 1
    record_metrics: bool = True
    warmup: bool = True

    def __post_init__(self) -> None:
        if self.preset not in PRESET_CHOICES:
            raise ValueError(f"unknown preset {self.preset!r}: one of {', '.join(PRESET_CHOICES)}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"unknown device {self.device!r}: auto, cpu, cuda or cuda:N")
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"unknown dtype {self.dtype!r}: one of {', '.join(DTYPE_CHOICES)}")
        if self.block_size < 1:
            raise ValueError("block size must be at least 1 token")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be at least 1")

    def kv_budget_for(self, device_type: str) -> KVCacheMemory:
        """The KV pool budget, resolving the default by device type."""
        if self.kv_cache_memory is not None:
            return self.kv_cache_memory
        return KVCacheMemory(bytes=DEFAULT_KV_CACHE_BYTES.get(device_type, 256 * 2**20))

    def preset_for(self, device_type: str) -> ModelConfig:
        """The model shape, resolving `auto` by device type."""
        name = self.preset
        if name == "auto":
            name = "small" if device_type == "cuda" else "tiny"
        return PRESETS[name]
