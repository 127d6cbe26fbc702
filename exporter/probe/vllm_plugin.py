"""The vLLM general plugin (entry point group `vllm.general_plugins`, declared in
pyproject.toml): vLLM calls `register()` in each of its processes; the probe starts there when
GIE_TORCH_PROBE_DIR names a directory, and is otherwise a no-op."""

from __future__ import annotations

from exporter.probe import start_from_env


def register() -> None:
    start_from_env()
