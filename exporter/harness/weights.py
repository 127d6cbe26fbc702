"""Model weights: random from a fixed seed (same seed, same model, on any device), or a local
safetensors file. Nothing is ever downloaded."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from exporter.harness.config import ModelConfig
from exporter.harness.model import Rotary, Transformer


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit the model preset."""


def seeded_model(cfg: ModelConfig, seed: int) -> Transformer:
    """A model with weights drawn from `seed` on the CPU in float32 (device-independent)."""
    model = Transformer(cfg)
    generator = torch.Generator().manual_seed(seed)
    residual_scale = 1.0 / math.sqrt(2 * cfg.n_layers)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
                continue
            std = 0.02 * (residual_scale if name.endswith(("wo.weight", "w_down.weight")) else 1)
            param.normal_(0.0, std, generator=generator)
    return model


def _expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every weight's name and shape for the preset, without allocating it."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_weights(path: str | Path, cfg: ModelConfig) -> None:
    """Read only the file's safetensors header: WeightsError (one line) unless it is a
    safetensors file whose names and shapes are the preset's."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - safetensors comes with the harness extra
        raise WeightsError(
            "reading --harness.weights needs safetensors: pip install "
            "'gpu-inference-exporter[harness]'"
        ) from None
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path} is not a file")
    try:
        with safe_open(str(path), framework="pt") as f:  # type: ignore[no-untyped-call]
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path} is not a safetensors weights file ({reason})") from None
    expected = _expected_shapes(cfg)
    missing = sorted(expected.keys() - shapes.keys())
    unexpected = sorted(shapes.keys() - expected.keys())
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not match the {cfg.name} preset: "
            f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise WeightsError(
                f"{path}: {name} has shape {shape}, the {cfg.name} preset expects {expected[name]}"
            )


def load_weights(model: Transformer, path: str | Path) -> None:
    """Load a safetensors file into `model`, explaining any mismatch with the preset."""
    from safetensors.torch import load_file

    check_weights(path, model.cfg)
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from None
    model.load_state_dict(tensors, strict=True)


def save_weights(model: Transformer, path: str | Path) -> None:
    """Write the model's weights as safetensors (for --harness.weights)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)


def build_model(
    cfg: ModelConfig,
    *,
    seed: int,
    weights: str | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Transformer:
    """The model on its device, in its dtype, ready for inference."""
    model = seeded_model(cfg, seed)
    if weights:
        load_weights(model, weights)
    model = model.to(device=device, dtype=dtype)
    # Rotary tables stay float32 whatever the dtype: rebuild them rather than round-trip.
    model.rotary = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta).to(device)
    return model.eval().requires_grad_(False)
