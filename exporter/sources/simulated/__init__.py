"""The simulated GPU fleet: a deterministic stand-in for NVML/DCGM with named fault scenarios.

Used for the demo, the tests and the end-to-end alert checks; never chosen silently on a
machine that has a GPU.
"""

from exporter.sources.simulated.fleet import SimulatedSource
from exporter.sources.simulated.models import DEFAULT_MODEL, GPU_MODELS, GpuModel
from exporter.sources.simulated.scenarios import SCENARIOS, Scenario, parse_scenario

__all__ = [
    "DEFAULT_MODEL",
    "GPU_MODELS",
    "SCENARIOS",
    "GpuModel",
    "Scenario",
    "SimulatedSource",
    "parse_scenario",
]
