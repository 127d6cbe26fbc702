"""PyTorch for the harness tests, or a failure that says how to get it (never a skip)."""

try:
    import torch
except ImportError as exc:  # pragma: no cover - scripts/test installs the harness extra
    raise ImportError(
        "the harness tests need PyTorch: scripts/test installs it "
        "(pip install -c constraints/test.txt -e '.[test,harness]')"
    ) from exc

__all__ = ["torch"]
