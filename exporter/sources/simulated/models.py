"""Specifications of the GPU models the simulated fleet can play.

Memory totals are what NVML reports for each board (in MiB); TDP, the maximum graphics, SM and
memory clocks and the NVLink link counts follow the published specifications. Video clocks,
driver-reserved memory, idle power and clocks, NVLink traffic and the thermal constants are
typical values chosen for plausibility, not datasheet figures.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
MHZ = 1_000_000


@dataclass(frozen=True, slots=True)
class GpuModel:
    """One board's figures, in base units (bytes, watts, hertz, °C, seconds)."""

    name: str
    memory_total_bytes: int
    memory_reserved_bytes: int
    power_limit_watts: float  # TDP: the default enforced limit
    min_power_limit_watts: float
    idle_watts: float
    max_graphics_hertz: float
    max_sm_hertz: float
    max_memory_hertz: float
    max_video_hertz: float
    idle_sm_hertz: float
    idle_video_hertz: float
    nvlink_links: int
    nvlink_full_load_bytes_per_second: float  # traffic per direction at utilization 1
    inlet_celsius: float  # steady temperature the die tends to at zero power
    thermal_resistance: float  # °C per watt above the inlet temperature
    thermal_time_constant_seconds: float
    sw_thermal_slowdown_celsius: float  # software thermal slowdown starts here
    hw_thermal_slowdown_celsius: float  # hardware thermal slowdown starts here


H100_SXM_80GB = GpuModel(
    name="H100 SXM 80GB",
    memory_total_bytes=81_559 * MIB,
    memory_reserved_bytes=512 * MIB,
    power_limit_watts=700.0,
    min_power_limit_watts=200.0,
    idle_watts=70.0,
    max_graphics_hertz=1980 * MHZ,
    max_sm_hertz=1980 * MHZ,
    max_memory_hertz=2619 * MHZ,
    max_video_hertz=1545 * MHZ,
    idle_sm_hertz=345 * MHZ,
    idle_video_hertz=765 * MHZ,
    nvlink_links=18,
    nvlink_full_load_bytes_per_second=45e9,
    inlet_celsius=27.0,
    thermal_resistance=0.066,
    thermal_time_constant_seconds=12.0,
    sw_thermal_slowdown_celsius=87.0,
    hw_thermal_slowdown_celsius=89.0,
)

H200_SXM_141GB = GpuModel(
    name="H200 SXM 141GB",
    memory_total_bytes=143_771 * MIB,
    memory_reserved_bytes=640 * MIB,
    power_limit_watts=700.0,
    min_power_limit_watts=200.0,
    idle_watts=75.0,
    max_graphics_hertz=1980 * MHZ,
    max_sm_hertz=1980 * MHZ,
    max_memory_hertz=3201 * MHZ,
    max_video_hertz=1545 * MHZ,
    idle_sm_hertz=345 * MHZ,
    idle_video_hertz=765 * MHZ,
    nvlink_links=18,
    nvlink_full_load_bytes_per_second=45e9,
    inlet_celsius=27.0,
    thermal_resistance=0.066,
    thermal_time_constant_seconds=12.0,
    sw_thermal_slowdown_celsius=87.0,
    hw_thermal_slowdown_celsius=89.0,
)

A100_SXM_80GB = GpuModel(
    name="A100 SXM 80GB",
    memory_total_bytes=81_920 * MIB,
    memory_reserved_bytes=580 * MIB,
    power_limit_watts=400.0,
    min_power_limit_watts=100.0,
    idle_watts=55.0,
    max_graphics_hertz=1410 * MHZ,
    max_sm_hertz=1410 * MHZ,
    max_memory_hertz=1593 * MHZ,
    max_video_hertz=1290 * MHZ,
    idle_sm_hertz=210 * MHZ,
    idle_video_hertz=585 * MHZ,
    nvlink_links=12,
    nvlink_full_load_bytes_per_second=30e9,
    inlet_celsius=27.0,
    thermal_resistance=0.097,
    thermal_time_constant_seconds=12.0,
    sw_thermal_slowdown_celsius=87.0,
    hw_thermal_slowdown_celsius=89.0,
)

L40S_48GB = GpuModel(
    name="L40S 48GB",
    memory_total_bytes=46_068 * MIB,
    memory_reserved_bytes=420 * MIB,
    power_limit_watts=350.0,
    min_power_limit_watts=100.0,
    idle_watts=35.0,
    max_graphics_hertz=2520 * MHZ,
    max_sm_hertz=2520 * MHZ,
    max_memory_hertz=9001 * MHZ,
    max_video_hertz=1965 * MHZ,
    idle_sm_hertz=210 * MHZ,
    idle_video_hertz=795 * MHZ,
    nvlink_links=0,
    nvlink_full_load_bytes_per_second=0.0,
    inlet_celsius=27.0,
    thermal_resistance=0.123,
    thermal_time_constant_seconds=12.0,
    sw_thermal_slowdown_celsius=87.0,
    hw_thermal_slowdown_celsius=89.0,
)

#: Every model, by name; the first is the default.
GPU_MODELS: dict[str, GpuModel] = {
    m.name: m for m in (H100_SXM_80GB, H200_SXM_141GB, A100_SXM_80GB, L40S_48GB)
}

DEFAULT_MODEL = H100_SXM_80GB.name


def gpu_model(name: str) -> GpuModel:
    """The model called `name`; a ValueError listing the models when there is none."""
    try:
        return GPU_MODELS[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in GPU_MODELS)
        raise ValueError(f"unknown GPU model {name!r} (valid models: {valid})") from None
