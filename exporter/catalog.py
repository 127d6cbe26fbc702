"""The metric catalog: every family this exporter can publish, in one place.

Sources emit samples *by catalog entry*, the exposition renders families in catalog order, and
the dashboard and alert generators import these entries, so a renamed or misspelt metric fails
at generation time (in CI) instead of silently producing an empty panel or a rule that never
fires.

Conventions (see DESIGN.md): base units in the name (`_bytes`, `_seconds`, `_celsius`, `_watts`,
`_joules`, `_hertz`), ratios 0-1 as `_ratio`, counters end in `_total`, one `_info` series per
GPU carries the descriptive labels so every other device series carries only `gpu` and `uuid`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from exporter.samples import Sample


class Kind(StrEnum):
    """Prometheus metric type of a family."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


#: Labels every per-device series carries.
DEVICE_LABELS: tuple[str, ...] = ("gpu", "uuid")

#: Units a family name may end in (before `_total` for counters).
BASE_UNITS: tuple[str, ...] = (
    "bytes",
    "seconds",
    "celsius",
    "watts",
    "joules",
    "hertz",
    "ratio",
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PREFIXES = ("gpu_", "torch_cuda_", "inference_", "exporter_", "process_")


@dataclass(frozen=True, slots=True)
class MetricFamily:
    """One metric family: its exposed name, type, unit, help text and label names.

    `name` is the name as Prometheus stores it (counters include `_total`), which is what
    dashboards and alert expressions reference.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        problems = catalog_problems(self)
        if problems:
            raise ValueError(f"metric family {self.name!r}: " + "; ".join(problems))

    @property
    def base_name(self) -> str:
        """The name without the `_total` suffix a counter carries."""
        if self.kind is Kind.COUNTER:
            return self.name.removesuffix("_total")
        return self.name

    def sample(self, value: float, **labels: str) -> Sample:
        """A sample of this family; the label names must be exactly the family's."""
        if labels.keys() != set(self.labels):
            raise ValueError(
                f"{self.name}: labels {sorted(labels)} do not match the catalog's "
                f"{sorted(self.labels)}"
            )
        return Sample(self.name, tuple((k, str(labels[k])) for k in self.labels), float(value))

    def __str__(self) -> str:  # so f"rate({GPU_ENERGY}[5m])" reads naturally in generators
        return self.name


def catalog_problems(family: MetricFamily) -> list[str]:
    """Convention violations of one family (empty when it follows them)."""
    problems: list[str] = []
    name = family.name
    if not _NAME_RE.match(name):
        problems.append("name must be snake_case ASCII")
    if not name.startswith(_PREFIXES):
        problems.append(f"name must start with one of {_PREFIXES}")
    if family.kind is Kind.COUNTER and not name.endswith("_total"):
        problems.append("a counter's name ends in _total")
    if family.kind is not Kind.COUNTER and name.endswith("_total"):
        problems.append("only counters end in _total")
    if family.unit:
        if family.unit not in BASE_UNITS:
            problems.append(f"unit {family.unit!r} is not a base unit {BASE_UNITS}")
        if not family.base_name.endswith("_" + family.unit):
            problems.append(f"name must end in _{family.unit} (before _total)")
    else:
        for unit in BASE_UNITS:
            if family.base_name.endswith("_" + unit):
                problems.append(f"name ends in _{unit}: declare unit={unit!r}")
    if family.kind is Kind.HISTOGRAM:
        if not family.buckets or list(family.buckets) != sorted(set(family.buckets)):
            problems.append("a histogram needs strictly increasing buckets")
    elif family.buckets:
        problems.append("only histograms have buckets")
    if not family.help or family.help[0].islower() or family.help.endswith("."):
        problems.append("help starts with a capital letter or a digit and has no trailing period")
    if len(set(family.labels)) != len(family.labels) or "le" in family.labels:
        problems.append("label names must be unique and not 'le'")
    return problems


def _gauge(
    name: str, help: str, labels: tuple[str, ...] = DEVICE_LABELS, unit: str = ""
) -> MetricFamily:
    return MetricFamily(name, Kind.GAUGE, help, labels, unit)


def _counter(
    name: str, help: str, labels: tuple[str, ...] = DEVICE_LABELS, unit: str = ""
) -> MetricFamily:
    return MetricFamily(name, Kind.COUNTER, help, labels, unit)


# --- GPU identity and health -------------------------------------------------------------------

GPU_INFO = _gauge(
    "gpu_info",
    "Descriptive labels of a GPU (always 1); join on gpu and uuid",
    (*DEVICE_LABELS, "name", "pci_bus_id", "driver_version", "cuda_version", "backend"),
)
GPU_UP = _gauge(
    "gpu_up",
    "1 when the GPU answered this collection, 0 when it is lost or failing "
    "(its other series are then absent)",
)

GPU_BACKEND_UP = _gauge(
    "gpu_backend_up",
    "1 while the GPU backend (dcgm, nvml or simulated) answers; 0 when it fails or none was found",
    ("backend",),
)

# --- Utilization and memory ---------------------------------------------------------------------

GPU_UTILIZATION = _gauge(
    "gpu_utilization_ratio",
    "Share of the last sample period during which a kernel was running on the GPU",
    unit="ratio",
)
GPU_MEMORY_COPY_UTILIZATION = _gauge(
    "gpu_memory_copy_utilization_ratio",
    "Share of the last sample period during which device memory was being read or written",
    unit="ratio",
)
GPU_MEMORY_USED = _gauge(
    "gpu_memory_used_bytes",
    "Device memory allocated by processes (excludes memory reserved by the driver)",
    unit="bytes",
)
GPU_MEMORY_FREE = _gauge("gpu_memory_free_bytes", "Device memory not allocated", unit="bytes")
GPU_MEMORY_TOTAL = _gauge("gpu_memory_total_bytes", "Total device memory", unit="bytes")
GPU_MEMORY_RESERVED = _gauge(
    "gpu_memory_reserved_bytes",
    "Device memory reserved by the driver and firmware (total = used + free + reserved)",
    unit="bytes",
)

# --- MIG devices and processes ------------------------------------------------------------------

MIG_LABELS: tuple[str, ...] = (*DEVICE_LABELS, "gpu_instance", "compute_instance")

GPU_MIG_INFO = _gauge(
    "gpu_mig_info",
    "Descriptive labels of a MIG device of a GPU in MIG mode (always 1): its own UUID and "
    "profile name",
    (*MIG_LABELS, "mig_uuid", "name"),
)
GPU_MIG_MEMORY_USED = _gauge(
    "gpu_mig_memory_used_bytes",
    "Device memory allocated on a MIG device (gpu_instance and compute_instance name it)",
    MIG_LABELS,
    unit="bytes",
)
GPU_MIG_MEMORY_FREE = _gauge(
    "gpu_mig_memory_free_bytes", "Device memory not allocated on a MIG device", MIG_LABELS, "bytes"
)
GPU_MIG_MEMORY_TOTAL = _gauge(
    "gpu_mig_memory_total_bytes", "Total device memory of a MIG device", MIG_LABELS, "bytes"
)
GPU_PROCESS_MEMORY_USED = _gauge(
    "gpu_process_memory_used_bytes",
    "Device memory used by a compute process on the GPU (opt-in: --collect.processes)",
    (*DEVICE_LABELS, "pid", "process"),
    unit="bytes",
)

# --- Thermal, power and clocks ------------------------------------------------------------------

GPU_TEMPERATURE = _gauge(
    "gpu_temperature_celsius",
    "Temperature of a GPU sensor (sensor is gpu or memory)",
    (*DEVICE_LABELS, "sensor"),
    unit="celsius",
)
GPU_POWER = _gauge("gpu_power_watts", "Power drawn by the board", unit="watts")
GPU_POWER_LIMIT = _gauge(
    "gpu_power_limit_watts", "Power limit the driver enforces on the board", unit="watts"
)
GPU_ENERGY = _counter(
    "gpu_energy_joules_total", "Energy consumed by the board since the driver loaded", unit="joules"
)
GPU_CLOCK = _gauge(
    "gpu_clock_hertz",
    "Current clock frequency (clock is graphics, sm, memory or video)",
    (*DEVICE_LABELS, "clock"),
    unit="hertz",
)
GPU_CLOCK_MAX = _gauge(
    "gpu_clock_max_hertz",
    "Maximum clock frequency the GPU supports (clock is graphics, sm, memory or video)",
    (*DEVICE_LABELS, "clock"),
    unit="hertz",
)
GPU_CLOCK_EVENT_ACTIVE = _gauge(
    "gpu_clock_event_active",
    "1 while a clock event reason (throttling such as sw_thermal_slowdown) holds the clocks down",
    (*DEVICE_LABELS, "reason"),
)
GPU_CLOCK_EVENT_SECONDS = _counter(
    "gpu_clock_event_seconds_total",
    "Time a clock event reason has been active, where the source can count it",
    (*DEVICE_LABELS, "reason"),
    unit="seconds",
)

# --- Interconnect -------------------------------------------------------------------------------

GPU_PCIE_REPLAYS = _counter(
    "gpu_pcie_replays_total", "PCIe replays (link-level retransmissions) since the driver loaded"
)
GPU_NVLINK_LINK_UP = _gauge(
    "gpu_nvlink_link_up",
    "1 when an NVLink link is active, 0 when it is down",
    (*DEVICE_LABELS, "link"),
)
GPU_NVLINK_TRANSMIT = _counter(
    "gpu_nvlink_transmit_bytes_total",
    "Data bytes sent over all NVLink links of the GPU",
    unit="bytes",
)
GPU_NVLINK_RECEIVE = _counter(
    "gpu_nvlink_receive_bytes_total",
    "Data bytes received over all NVLink links of the GPU",
    unit="bytes",
)
GPU_NVLINK_ERRORS = _counter(
    "gpu_nvlink_errors_total",
    "NVLink errors summed over links (type is crc_flit, crc_data, replay or recovery)",
    (*DEVICE_LABELS, "type"),
)

# --- Profiling: what the SMs, tensor cores and memory really do, and PCIe traffic (DCGM) --------

GPU_SM_ACTIVE = _gauge(
    "gpu_sm_active_ratio",
    "Share of cycles an SM had at least one warp resident, averaged over all SMs: 100% "
    "utilization with a low value means few SMs are busy (DCGM profiling)",
    unit="ratio",
)
GPU_SM_OCCUPANCY = _gauge(
    "gpu_sm_occupancy_ratio",
    "Warps resident on the SMs over the most they can hold, averaged over the sample period "
    "(DCGM profiling)",
    unit="ratio",
)
GPU_TENSOR_ACTIVE = _gauge(
    "gpu_tensor_active_ratio",
    "Share of cycles the tensor-core pipes were busy (DCGM profiling)",
    unit="ratio",
)
GPU_DRAM_ACTIVE = _gauge(
    "gpu_dram_active_ratio",
    "Share of cycles the device memory interface was sending or receiving data (DCGM profiling)",
    unit="ratio",
)
GPU_PCIE_TRANSMIT = _counter(
    "gpu_pcie_transmit_bytes_total",
    "Bytes the GPU sent over PCIe, protocol headers included, counted from DCGM's rate since the "
    "exporter started (DCGM profiling)",
    unit="bytes",
)
GPU_PCIE_RECEIVE = _counter(
    "gpu_pcie_receive_bytes_total",
    "Bytes the GPU received over PCIe, protocol headers included, counted from DCGM's rate since "
    "the exporter started (DCGM profiling)",
    unit="bytes",
)

# --- Memory errors and Xid ----------------------------------------------------------------------

GPU_ECC_ERRORS = _counter(
    "gpu_ecc_errors_total",
    "ECC errors since the driver loaded (type is corrected or uncorrected)",
    (*DEVICE_LABELS, "type"),
)
GPU_REMAPPED_ROWS = _gauge(
    "gpu_remapped_rows",
    "Memory rows remapped (kind is correctable or uncorrectable)",
    (*DEVICE_LABELS, "kind"),
)
GPU_ROW_REMAP_PENDING = _gauge(
    "gpu_row_remap_pending", "1 when a row remap waits for a GPU reset to take effect"
)
GPU_ROW_REMAP_FAILURE = _gauge(
    "gpu_row_remap_failure", "1 when a row remap failed: the GPU should be replaced"
)
GPU_RECOVERY_ACTION = _gauge(
    "gpu_recovery_action",
    "What the driver says the GPU needs before new work can use it, held until done: 0 none, "
    "1 GPU reset, 2 node reboot, 3 drain peer-to-peer traffic, 4 drain and reset",
)
GPU_XID_ERRORS = _counter(
    "gpu_xid_errors_total",
    "Xid error events seen by this exporter, one counter per Xid code",
    (*DEVICE_LABELS, "xid"),
)

# --- PyTorch caching allocator ------------------------------------------------------------------
# One series per process and GPU: the exporter's own harness, and every serving process that runs
# the allocator probe (exporter/probe, read from --torch.probe-dir).

#: Labels of the allocator series: the GPU, and the process whose allocator it is.
PROCESS_LABELS: tuple[str, ...] = (*DEVICE_LABELS, "pid", "process")

TORCH_CUDA_MEMORY_ALLOCATED = _gauge(
    "torch_cuda_memory_allocated_bytes",
    "Memory held by live tensors in the PyTorch caching allocator",
    PROCESS_LABELS,
    unit="bytes",
)
TORCH_CUDA_MEMORY_RESERVED = _gauge(
    "torch_cuda_memory_reserved_bytes",
    "Memory the PyTorch caching allocator holds from the driver (what nvidia-smi shows)",
    PROCESS_LABELS,
    unit="bytes",
)
TORCH_CUDA_MEMORY_INACTIVE_SPLIT = _gauge(
    "torch_cuda_memory_inactive_split_bytes",
    "Free memory stranded inside partly used allocator segments, which empty_cache cannot return",
    PROCESS_LABELS,
    unit="bytes",
)
TORCH_CUDA_FRAGMENTATION = _gauge(
    "torch_cuda_fragmentation_ratio",
    "Inactive split bytes over reserved bytes (0 when nothing is reserved)",
    PROCESS_LABELS,
    unit="ratio",
)
TORCH_CUDA_ALLOC_RETRIES = _counter(
    "torch_cuda_alloc_retries_total",
    "Allocations that failed, freed the cache and retried: the step before an OOM",
    PROCESS_LABELS,
)
TORCH_CUDA_OOMS = _counter(
    "torch_cuda_ooms_total",
    "Out-of-memory errors raised by the PyTorch caching allocator",
    PROCESS_LABELS,
)

# --- Inference harness ---------------------------------------------------------------------

INFERENCE_TIME_TO_FIRST_TOKEN = MetricFamily(
    "inference_time_to_first_token_seconds",
    Kind.HISTOGRAM,
    "Time from a request's arrival to its first generated token",
    (),
    "seconds",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
INFERENCE_TIME_PER_OUTPUT_TOKEN = MetricFamily(
    "inference_time_per_output_token_seconds",
    Kind.HISTOGRAM,
    "Gap between consecutive generated tokens of a request",
    (),
    "seconds",
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INFERENCE_REQUEST_DURATION = MetricFamily(
    "inference_request_duration_seconds",
    Kind.HISTOGRAM,
    "End-to-end duration of a request, from arrival to its last token or its failure",
    (),
    "seconds",
    (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
INFERENCE_QUEUE_DURATION = MetricFamily(
    "inference_queue_duration_seconds",
    Kind.HISTOGRAM,
    "Time a request waited before its prefill started",
    (),
    "seconds",
    (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
INFERENCE_REQUESTS_RUNNING = _gauge(
    "inference_requests_running", "Requests being decoded in the current batch", ()
)
INFERENCE_REQUESTS_WAITING = _gauge(
    "inference_requests_waiting", "Requests queued for admission to the batch", ()
)
INFERENCE_KV_CACHE_UTILIZATION = _gauge(
    "inference_kv_cache_utilization_ratio",
    "Used KV-cache blocks over all blocks of the pool",
    (),
    unit="ratio",
)
INFERENCE_KV_CACHE_FRAGMENTATION = _gauge(
    "inference_kv_cache_fragmentation_ratio",
    "Share of the used KV-cache blocks' token slots that hold no token",
    (),
    unit="ratio",
)
INFERENCE_KV_CACHE_BLOCKS = _gauge(
    "inference_kv_cache_blocks", "KV-cache blocks by state (used or free)", ("state",)
)
INFERENCE_READY = _gauge(
    "inference_ready", "1 once the model is loaded and a warm-up generation completed", ()
)
INFERENCE_ENGINE_FAILED = _gauge(
    "inference_engine_failed",
    "1 when the engine failed (at start or while serving) and answers nothing until restarted",
    (),
)
INFERENCE_MODEL_INFO = _gauge(
    "inference_model_info",
    "The harness's model, dtype and device (always 1)",
    ("model", "dtype", "device"),
)
INFERENCE_REQUESTS = _counter(
    "inference_requests_total",
    "Finished requests by outcome (ok, rejected, shed, timeout, error or cancelled)",
    ("outcome",),
)
INFERENCE_PROMPT_TOKENS = _counter("inference_prompt_tokens_total", "Prompt tokens prefilled", ())
INFERENCE_GENERATION_TOKENS = _counter("inference_generation_tokens_total", "Tokens generated", ())
INFERENCE_PREEMPTIONS = _counter(
    "inference_preemptions_total",
    "Requests preempted (blocks freed, requeued for recompute) when the KV cache ran out",
    (),
)

# --- The exporter itself ------------------------------------------------------------------------

EXPORTER_BUILD_INFO = _gauge(
    "exporter_build_info",
    "Version of gpu-inference-exporter and of its Python (always 1)",
    ("version", "python_version"),
)
EXPORTER_POD_INFO = _gauge(
    "exporter_pod_info",
    "The Kubernetes pod the exporter runs in (always 1): pod identity lives here, not on every "
    "series, so a rollout does not change the series of the GPUs",
    ("namespace", "pod"),
)
EXPORTER_SOURCE_UP = _gauge(
    "exporter_source_up",
    "1 when the source answered its last collection in time, 0 when it failed or hung",
    ("source",),
)
EXPORTER_COLLECT_DURATION = _gauge(
    "exporter_collect_duration_seconds",
    "Duration of the source's last collection (the timeout when it hung)",
    ("source",),
    unit="seconds",
)
EXPORTER_COLLECT_ERRORS = _counter(
    "exporter_collect_errors_total",
    "Failed collections per source (reason is error, timeout, invalid or unavailable)",
    ("source", "reason"),
)
EXPORTER_TORCH_PROBE_FILES = _gauge(
    "exporter_torch_probe_files",
    "Allocator probe files in --torch.probe-dir by state: live (exported), stale (a process "
    "that exited, not removable), refused (owner, mode, type or size), corrupt (torn or not a "
    "probe's)",
    ("state",),
)
EXPORTER_LAST_COLLECT_TIMESTAMP = _gauge(
    "exporter_last_collect_timestamp_seconds",
    "Unix time at which the published snapshot was collected",
    (),
    unit="seconds",
)

# --- The exporter's own process: the names every Prometheus client library exports -----------
# (prometheus_client's ProcessCollector reads them; --web.disable-exporter-metrics drops them)

PROCESS_CPU_SECONDS = _counter(
    "process_cpu_seconds_total", "Total user and system CPU time spent in seconds", (), "seconds"
)
PROCESS_RESIDENT_MEMORY = _gauge(
    "process_resident_memory_bytes", "Resident memory size in bytes", (), "bytes"
)
PROCESS_VIRTUAL_MEMORY = _gauge(
    "process_virtual_memory_bytes", "Virtual memory size in bytes", (), "bytes"
)
PROCESS_START_TIME = _gauge(
    "process_start_time_seconds", "Start time of the process since unix epoch in seconds", (),
    "seconds",
)  # fmt: skip
PROCESS_OPEN_FDS = _gauge("process_open_fds", "Number of open file descriptors", ())
PROCESS_MAX_FDS = _gauge("process_max_fds", "Maximum number of open file descriptors", ())


def _collect_families() -> dict[str, MetricFamily]:
    families: dict[str, MetricFamily] = {}
    for value in globals().values():
        if isinstance(value, MetricFamily):
            if value.name in families:
                raise ValueError(f"metric family {value.name} is declared twice")
            families[value.name] = value
    return families


#: Every family, by exposed name, in declaration order (the exposition order).
FAMILIES: dict[str, MetricFamily] = _collect_families()


def family(name: str) -> MetricFamily:
    """The catalog entry for `name`; a KeyError naming close matches when it does not exist."""
    try:
        return FAMILIES[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, FAMILIES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"{name} is not in the metric catalog{hint}") from None
