"""The generated files of alerts/, for `gpu-inference-exporter generate` (exporter/generate.py)."""

from __future__ import annotations

from collections.abc import Callable

from alerts.alertmanager import ALERTMANAGER_PATH, render_alertmanager
from alerts.rules import RULES_PATH, render_rules
from alerts.runbooks import INDEX_PATH, render_index
from alerts.thresholds import Thresholds, load


def artifacts(config: str | None = None) -> dict[str, Callable[[str], str]]:
    """Relative path → generator (current text → new text), with the thresholds of the YAML
    file `config` (None: the defaults). Raises ValueError for a bad config."""
    t: Thresholds = load(config)
    return {
        RULES_PATH: lambda _current: render_rules(t),
        ALERTMANAGER_PATH: lambda _current: render_alertmanager(),
        INDEX_PATH: lambda _current: render_index(t),
    }
