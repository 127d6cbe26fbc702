"""The alert thresholds drawn on panels: the same numbers the alert rules use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PanelThresholds:
    """Warning and critical levels of the alerts that have a panel."""

    memory_used_warning: float = 0.75
    memory_used_critical: float = 0.90
    memory_fill_within_seconds: float = 15 * 60
    temperature_warning: float = 85.0
    temperature_critical: float = 90.0
    fragmentation_warning: float = 0.3
    fragmentation_critical: float = 0.5
    kv_cache_warning: float = 0.8
    kv_cache_critical: float = 0.9
    e2e_p99_warning: float = 5.0
    e2e_p99_critical: float = 10.0
    ttft_p99_warning: float = 2.0
    ttft_p99_critical: float = 5.0
    tpot_p99_warning: float = 0.1
    tpot_p99_critical: float = 0.25
    error_ratio_warning: float = 0.01
    error_ratio_critical: float = 0.02


def load_panel_thresholds() -> PanelThresholds:
    """The thresholds the dashboards draw."""
    return PanelThresholds()
