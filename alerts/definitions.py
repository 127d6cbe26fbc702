"""The alerts and recording rules, built from catalog entries and the thresholds config.

Every expression names metrics through `exporter.catalog` attributes (a family missing from the
catalog is an AttributeError here) and `alerts.rules` checks the finished expressions again
with `exporter.promql`. Conventions (monitoring mixins): CamelCase names, one name per condition
with a `warning` and a `critical` tier where both make sense, `summary` static, `description`
templated with the GPU, the node (or instance) and the humanized value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from alerts.model import Alert, RecordingRule, TierRule
from alerts.thresholds import Duration, Thresholds, Tier, Tiers
from exporter import catalog as c
from exporter.sources.xid import XID_MEANINGS

UP = "up"  # Prometheus's own per-target series (exporter.promql.PROMETHEUS_SERIES)

WHERE = "{{ or $labels.node $labels.instance }}"
GPU = "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on " + WHERE
ENGINE = (
    "The inference engine at {{ $labels.instance }}{{ with $labels.pod }} (pod {{ . }}){{ end }}"
)
PERCENT = "{{ $value | humanizePercentage }}"
SECONDS = "{{ $value | humanizeDuration }}"
NUMBER = "{{ $value | humanize }}"


def num(x: float) -> str:
    """A threshold as PromQL writes it: 0.75, 85, 1e-05."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def pct(x: float) -> str:
    """0.75 → 75%."""
    return f"{round(x * 100, 6):g}%"


def secs(x: float) -> str:
    """5 → 5s, 0.25 → 250ms."""
    return f"{round(x * 1000, 3):g}ms" if x < 1 else f"{x:g}s"


def selector_values(values: Iterable[object]) -> str:
    """A regular expression matching exactly these label values: 48|62|63."""
    return "|".join(str(v) for v in values)


def either(words: Iterable[str]) -> str:
    """("a", "b", "c") → "a, b or c"."""
    items = list(words)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _held(for_: Duration) -> str:
    return f" for {for_}" if for_.seconds else ""


def _two_tiers(
    expr: str, tiers: Tiers, describe: str, condition: str, fmt: Callable[[float], str] = num
) -> tuple[TierRule, ...]:
    """A warning and a critical rule: `expr > threshold`; `describe` and `condition` may
    contain `<threshold>` and `<for>`."""
    out = []
    for severity, tier in (("warning", tiers.warning), ("critical", tiers.critical)):
        out.append(_above(severity, expr, tier, describe, condition, fmt))
    return tuple(out)


def _above(
    severity: str,
    expr: str,
    tier: Tier,
    describe: str,
    condition: str,
    fmt: Callable[[float], str] = num,
) -> TierRule:
    shown = fmt(tier.threshold)

    def fill(text: str) -> str:
        return text.replace("<threshold>", shown).replace("<for>", _held(tier.for_))

    return TierRule(
        severity, f"{expr} > {num(tier.threshold)}", tier.for_, fill(describe), fill(condition)
    )


def _xid_meaning_template() -> str:
    """Go template: the meaning of the alert's xid label, from the exporter's Xid table."""
    branches = " ".join(
        f'{"if" if i == 0 else "else if"} eq $labels.xid "{code}" }}}}{meaning}{{{{'
        for i, (code, meaning) in enumerate(sorted(XID_MEANINGS.items()))
    )
    return "{{ " + branches + " else }}see NVIDIA's Xid catalog{{ end }}"


# --- recording rules ----------------------------------------------------------------------------

LATENCY_HISTOGRAMS = {
    "request_duration": c.INFERENCE_REQUEST_DURATION,
    "time_to_first_token": c.INFERENCE_TIME_TO_FIRST_TOKEN,
    "time_per_output_token": c.INFERENCE_TIME_PER_OUTPUT_TOKEN,
    "queue_duration": c.INFERENCE_QUEUE_DURATION,
}
QUANTILES = {"p50": 0.5, "p99": 0.99}


def quantile_record(family: c.MetricFamily, label: str) -> str:
    """The recording rule name of a latency quantile: instance:<family>:p99."""
    return f"instance:{family.name}:{label}"


ERROR_RATIO_RECORD = f"instance:{c.INFERENCE_REQUESTS.base_name}:error_ratio"


def recording_rules(t: Thresholds) -> list[RecordingRule]:
    """Latency quantiles and the error ratio, per target, over the inference rate window."""
    w = t.inference_rate_window
    rules = [
        RecordingRule(
            quantile_record(fam, label),
            f"histogram_quantile({q}, rate({fam.name}_bucket[{w}]))",
            f"{label} of {fam.name} over {w}",
        )
        for fam in LATENCY_HISTOGRAMS.values()
        for label, q in QUANTILES.items()
    ]
    errors = selector_values(t.inference_error_outcomes)
    rules.append(
        RecordingRule(
            ERROR_RATIO_RECORD,
            f'sum without (outcome) (rate({c.INFERENCE_REQUESTS}{{outcome=~"{errors}"}}[{w}]))'
            f" / sum without (outcome) (rate({c.INFERENCE_REQUESTS}[{w}]))",
            f"share of requests that ended {', '.join(t.inference_error_outcomes)} over {w}",
        )
    )
    return rules


# --- GPU ----------------------------------------------------------------------------------------


def gpu_alerts(t: Thresholds) -> list[Alert]:
    L = t.links
    mem, detail = L.memory_dashboard, L.detail_dashboard
    fill = t.gpu_memory_filling
    slow = t.gpu_clock_slowdown
    power = t.gpu_power_at_limit
    xid = t.gpu_xid
    codes = selector_values(xid.critical_codes)
    meaning = _xid_meaning_template()
    nvl = t.gpu_nvlink_down
    nerr, pcie, ecc = t.gpu_nvlink_errors, t.gpu_pcie_replays, t.gpu_ecc_uncorrectable
    return [
        Alert(
            "GpuMemoryHigh",
            "gpu",
            "gpu",
            "GPU memory is nearly full",
            PERCENT,
            mem,
            "gpu",
            _two_tiers(
                f"{c.GPU_MEMORY_USED} / {c.GPU_MEMORY_TOTAL}",
                t.gpu_memory_used,
                f"{GPU} has {PERCENT} of its memory in use, above <threshold><for>: "
                "the next large allocation may fail with out of memory.",
                "memory used / total > <threshold><for>",
                pct,
            ),
        ),
        Alert(
            "GpuMemoryFillingUp",
            "gpu",
            "gpu",
            "GPU memory will be full soon at the current rate",
            "{{ $value | humanize1024 }}B",
            mem,
            "gpu",
            (
                TierRule(
                    "warning",
                    f"predict_linear({c.GPU_MEMORY_FREE}[{fill.window}], "
                    f"{num(fill.horizon.seconds)}) <= 0",
                    fill.for_,
                    f"{GPU}: at the rate of the last {fill.window}, its free memory runs out "
                    f"within {fill.horizon} (predicted free: {{{{ $value | humanize1024 }}}}B)"
                    f"{_held(fill.for_)}.",
                    f"free memory predicted (linear, over {fill.window}) to reach 0 within "
                    f"{fill.horizon}{_held(fill.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuTemperatureHigh",
            "gpu",
            "gpu",
            "GPU is overheating",
            "{{ $value }} °C",
            detail,
            "gpu",
            _two_tiers(
                f'{c.GPU_TEMPERATURE}{{sensor="gpu"}}',
                t.gpu_temperature,
                f"{GPU} is at {{{{ $value }}}} °C, above <threshold><for>: the driver slows its "
                "clocks down to cool it, and shuts it down past its limit.",
                "die temperature > <threshold><for>",
                lambda x: f"{num(x)} °C",
            ),
        ),
        Alert(
            "GpuClockSlowdown",
            "gpu",
            "gpu",
            "GPU clocks are held down by thermal or hardware slowdown",
            "{{ $labels.reason }}",
            detail,
            "gpu",
            (
                TierRule(
                    "warning",
                    f'{c.GPU_CLOCK_EVENT_ACTIVE}{{reason=~"{selector_values(slow.reasons)}"}} > 0',
                    slow.for_,
                    f"{GPU} has had its clocks held down by {{{{ $labels.reason }}}}"
                    f"{_held(slow.for_)}: it runs slower than it should.",
                    f"clock event reason {either(slow.reasons)} active{_held(slow.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuPowerAtLimit",
            "gpu",
            "gpu",
            "GPU is pinned at its power limit",
            PERCENT,
            detail,
            "gpu",
            (
                TierRule(
                    "warning",
                    f"{c.GPU_POWER} / {c.GPU_POWER_LIMIT} >= {num(power.threshold)}",
                    power.for_,
                    f"{GPU} draws {PERCENT} of its enforced power limit{_held(power.for_)}: "
                    "its clocks are capped by power, not by work.",
                    f"power / enforced limit >= {pct(power.threshold)}{_held(power.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuLost",
            "gpu",
            "gpu",
            "GPU is lost: it no longer answers the driver",
            f"{c.GPU_UP}={{{{ $value }}}}",
            detail,
            "gpu",
            (
                TierRule(
                    "critical",
                    f"{c.GPU_UP} == 0",
                    t.gpu_lost.for_,
                    f"{GPU} has not answered the driver{_held(t.gpu_lost.for_)} (fallen off the "
                    "bus, Xid 79, or failing): its work is lost until the node is drained and "
                    "the GPU reset or replaced.",
                    f"{c.GPU_UP} == 0{_held(t.gpu_lost.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuXidError",
            "gpu",
            "gpu",
            "GPU reported an Xid error",
            "Xid {{ $labels.xid }}",
            detail,
            "gpu",
            (
                TierRule(
                    "warning",
                    f'increase({c.GPU_XID_ERRORS}{{xid!~"{codes}"}}[{xid.window}]) > 0',
                    Duration(0),
                    f"{GPU} reported Xid {{{{ $labels.xid }}}} ({meaning}) "
                    f"{NUMBER} time(s) in the last {xid.window}.",
                    f"an Xid code other than {', '.join(map(str, xid.critical_codes))} "
                    f"within {xid.window}",
                ),
                TierRule(
                    "critical",
                    f'increase({c.GPU_XID_ERRORS}{{xid=~"{codes}"}}[{xid.window}]) > 0',
                    Duration(0),
                    f"{GPU} reported Xid {{{{ $labels.xid }}}} ({meaning}) "
                    f"{NUMBER} time(s) in the last {xid.window}: the GPU is unusable until "
                    "it is reset, the node rebooted or the GPU replaced.",
                    f"Xid {', '.join(map(str, xid.critical_codes))} within {xid.window}",
                ),
            ),
        ),
        Alert(
            "GpuEccUncorrectableErrors",
            "gpu",
            "gpu",
            "GPU memory has uncorrectable ECC errors",
            NUMBER,
            detail,
            "gpu",
            (
                TierRule(
                    "critical",
                    f'increase({c.GPU_ECC_ERRORS}{{type="uncorrected"}}[{ecc.window}]) > '
                    f"{num(ecc.threshold)}",
                    ecc.for_,
                    f"{GPU} counted {NUMBER} uncorrectable ECC error(s) in the last "
                    f"{ecc.window}: data in its memory was corrupted; the process using it "
                    "must be restarted and the GPU reset.",
                    f"uncorrected ECC errors increase over {ecc.window} > {num(ecc.threshold)}",
                ),
            ),
        ),
        Alert(
            "GpuRowRemapFailure",
            "gpu",
            "gpu",
            "GPU failed to remap a memory row: replace it",
            "{{ $value }}",
            detail,
            "gpu",
            (
                TierRule(
                    "critical",
                    f"{c.GPU_ROW_REMAP_FAILURE} > 0",
                    t.gpu_row_remap_failure.for_,
                    f"{GPU} failed to remap a faulty memory row: it has run out of spare rows "
                    "and should be replaced.",
                    f"{c.GPU_ROW_REMAP_FAILURE} > 0{_held(t.gpu_row_remap_failure.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuRowRemapPending",
            "gpu",
            "gpu",
            "GPU has a memory row remap waiting for a reset",
            "{{ $value }}",
            detail,
            "gpu",
            (
                TierRule(
                    "warning",
                    f"{c.GPU_ROW_REMAP_PENDING} > 0",
                    t.gpu_row_remap_pending.for_,
                    f"{GPU} has a memory row remap pending{_held(t.gpu_row_remap_pending.for_)}"
                    ": it takes effect at the next GPU reset; until then the faulty row may "
                    "still be used.",
                    f"{c.GPU_ROW_REMAP_PENDING} > 0{_held(t.gpu_row_remap_pending.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuNvlinkDown",
            "gpu",
            "gpu",
            "An NVLink link of the GPU went down",
            "link {{ $labels.link }}",
            detail,
            "gpu",
            (
                TierRule(
                    "critical",
                    f"{c.GPU_NVLINK_LINK_UP} == 0 and "
                    f"max_over_time({c.GPU_NVLINK_LINK_UP}[{nvl.lookback}]) == 1",
                    nvl.for_,
                    f"{GPU} has NVLink link {{{{ $labels.link }}}} down{_held(nvl.for_)}, after "
                    f"it was up within the last {nvl.lookback}: collective operations fall "
                    "back to PCIe or fail.",
                    f"a link up within {nvl.lookback} is down{_held(nvl.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuNvlinkErrorsRising",
            "gpu",
            "gpu",
            "NVLink errors are rising on the GPU",
            NUMBER,
            detail,
            "gpu",
            (
                TierRule(
                    "warning",
                    f"sum without (type) (increase({c.GPU_NVLINK_ERRORS}[{nerr.window}])) > "
                    f"{num(nerr.threshold)}",
                    nerr.for_,
                    f"{GPU} counted {NUMBER} NVLink errors in the last {nerr.window}, and "
                    f"they kept coming{_held(nerr.for_)}: a link is degrading.",
                    f"NVLink errors increase over {nerr.window} > {num(nerr.threshold)}"
                    f"{_held(nerr.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuPcieReplaysRising",
            "gpu",
            "gpu",
            "PCIe replays are rising on the GPU",
            NUMBER,
            detail,
            "gpu",
            (
                TierRule(
                    "warning",
                    f"increase({c.GPU_PCIE_REPLAYS}[{pcie.window}]) > {num(pcie.threshold)}",
                    pcie.for_,
                    f"{GPU} counted {NUMBER} PCIe replays in the last {pcie.window}, and they "
                    f"kept coming{_held(pcie.for_)}: its PCIe link is retransmitting "
                    "(riser, slot or signal integrity).",
                    f"PCIe replays increase over {pcie.window} > {num(pcie.threshold)}"
                    f"{_held(pcie.for_)}",
                ),
            ),
        ),
    ]


# --- PyTorch allocator --------------------------------------------------------------------------


def allocator_alerts(t: Thresholds) -> list[Alert]:
    mem = t.links.memory_dashboard
    retries, ooms = t.torch_alloc_retries, t.torch_ooms
    return [
        Alert(
            "TorchCudaFragmentationHigh",
            "allocator",
            "gpu",
            "PyTorch allocator memory is fragmented",
            PERCENT,
            mem,
            "gpu",
            _two_tiers(
                f"{c.TORCH_CUDA_FRAGMENTATION}",
                t.torch_fragmentation,
                f"The PyTorch caching allocator on {GPU} has {PERCENT} of its reserved memory "
                "stranded in partly used segments, above <threshold><for>: large "
                "allocations can fail with memory apparently free.",
                "inactive split / reserved > <threshold><for>",
                pct,
            ),
        ),
        Alert(
            "TorchCudaAllocRetries",
            "allocator",
            "gpu",
            "PyTorch allocations are failing and retrying",
            NUMBER,
            mem,
            "gpu",
            (
                TierRule(
                    "warning",
                    f"increase({c.TORCH_CUDA_ALLOC_RETRIES}[{retries.window}]) > "
                    f"{num(retries.threshold)}",
                    retries.for_,
                    f"The PyTorch caching allocator on {GPU} had to free its cache and retry "
                    f"{NUMBER} allocation(s) in the last {retries.window}: the step before "
                    "an out of memory error.",
                    f"alloc retries increase over {retries.window} > {num(retries.threshold)}"
                    f"{_held(retries.for_)}",
                ),
            ),
        ),
        Alert(
            "TorchCudaOutOfMemory",
            "allocator",
            "gpu",
            "PyTorch raised CUDA out of memory errors",
            NUMBER,
            mem,
            "gpu",
            (
                TierRule(
                    "critical",
                    f"increase({c.TORCH_CUDA_OOMS}[{ooms.window}]) > {num(ooms.threshold)}",
                    ooms.for_,
                    f"The PyTorch caching allocator on {GPU} raised {NUMBER} out of memory "
                    f"error(s) in the last {ooms.window}: requests or the process are failing.",
                    f"OOMs increase over {ooms.window} > {num(ooms.threshold)}{_held(ooms.for_)}",
                ),
            ),
        ),
    ]


# --- Inference harness --------------------------------------------------------------------------


def inference_alerts(t: Thresholds) -> list[Alert]:
    dash = t.links.inference_dashboard
    w = t.inference_rate_window
    p99 = {k: quantile_record(f, "p99") for k, f in LATENCY_HISTOGRAMS.items()}
    queue, pre, stuck = t.inference_queue_growing, t.inference_preemptions, t.inference_engine_stuck
    outcomes = either(t.inference_error_outcomes)
    latency = [
        (
            "InferenceRequestLatencyHigh",
            "Inference requests are slow end to end",
            p99["request_duration"],
            t.inference_request_p99,
            "end-to-end request duration",
        ),
        (
            "InferenceTimeToFirstTokenHigh",
            "Inference time to first token is high",
            p99["time_to_first_token"],
            t.inference_ttft_p99,
            "time to first token",
        ),
        (
            "InferenceTimePerOutputTokenHigh",
            "Inference time per output token is high",
            p99["time_per_output_token"],
            t.inference_tpot_p99,
            "time per output token",
        ),
    ]
    alerts = [
        Alert(
            "InferenceKvCacheHigh",
            "inference",
            "inference",
            "Inference KV cache is nearly full",
            PERCENT,
            dash,
            "target",
            _two_tiers(
                f"{c.INFERENCE_KV_CACHE_UTILIZATION}",
                t.inference_kv_cache,
                f"{ENGINE} has {PERCENT} of its KV cache blocks in use, above <threshold>"
                "<for>: new requests are shed and running ones preempted.",
                "KV cache utilization > <threshold><for>",
                pct,
            ),
        )
    ]
    alerts += [
        Alert(
            name,
            "inference",
            "inference",
            summary,
            SECONDS,
            dash,
            "target",
            _two_tiers(
                record,
                tiers,
                f"{ENGINE} has a p99 {what} of {SECONDS} over the last {w}, above "
                "<threshold><for>.",
                f"p99 {what} over {w} > <threshold><for>",
                secs,
            ),
        )
        for name, summary, record, tiers, what in latency
    ]
    alerts += [
        Alert(
            "InferenceErrorRatioHigh",
            "inference",
            "inference",
            "Inference requests are failing",
            PERCENT,
            dash,
            "target",
            _two_tiers(
                ERROR_RATIO_RECORD,
                t.inference_error_ratio,
                f"{ENGINE} ended {PERCENT} of its requests {outcomes} over the last {w}, "
                "above <threshold><for>.",
                f"({outcomes}) / all requests over {w} > <threshold><for>",
                pct,
            ),
        ),
        Alert(
            "InferenceQueueGrowing",
            "inference",
            "inference",
            "Inference request queue keeps growing",
            NUMBER,
            dash,
            "target",
            (
                TierRule(
                    "warning",
                    f"{c.INFERENCE_REQUESTS_WAITING} > {num(queue.min_waiting)} and "
                    f"deriv({c.INFERENCE_REQUESTS_WAITING}[{queue.window}]) > 0",
                    queue.for_,
                    f"{ENGINE} has {NUMBER} requests waiting and its queue has kept growing"
                    f"{_held(queue.for_)}: it cannot keep up with the load.",
                    f"waiting > {num(queue.min_waiting)} and its slope over {queue.window} > 0"
                    f"{_held(queue.for_)}",
                ),
            ),
        ),
        Alert(
            "InferencePreemptionsHigh",
            "inference",
            "inference",
            "Inference requests are being preempted",
            "{{ $value | humanize }}/s",
            dash,
            "target",
            (
                TierRule(
                    "warning",
                    f"rate({c.INFERENCE_PREEMPTIONS}[{pre.window}]) > {num(pre.threshold)}",
                    pre.for_,
                    f"{ENGINE} preempts {{{{ $value | humanize }}}} running requests per second "
                    f"(over {pre.window}), above {num(pre.threshold)}/s{_held(pre.for_)}: the "
                    "KV cache is too small for the batch, work is recomputed.",
                    f"preemptions rate over {pre.window} > {num(pre.threshold)}/s{_held(pre.for_)}",
                ),
            ),
        ),
        Alert(
            "InferenceEngineStuck",
            "inference",
            "inference",
            "Inference engine has requests waiting but its GPUs are idle",
            NUMBER,
            dash,
            "target",
            (
                TierRule(
                    "critical",
                    f"{c.INFERENCE_REQUESTS_WAITING} > 0 and on (instance) "
                    f"(max by (instance) ({c.GPU_UTILIZATION}) < {num(stuck.threshold)})",
                    stuck.for_,
                    f"{ENGINE} has {NUMBER} requests waiting while its GPUs are below "
                    f"{pct(stuck.threshold)} utilization{_held(stuck.for_)}: the engine "
                    "is stuck.",
                    f"waiting > 0 and GPU utilization < {pct(stuck.threshold)}{_held(stuck.for_)}",
                ),
            ),
        ),
    ]
    return alerts


# --- The exporter itself ------------------------------------------------------------------------


def exporter_alerts(t: Thresholds) -> list[Alert]:
    fleet = t.links.fleet_dashboard
    down, src, stale = t.exporter_down, t.exporter_source_down, t.exporter_stale
    return [
        Alert(
            "GpuExporterDown",
            "exporter",
            "exporter",
            "GPU exporter target is down",
            f"{UP}={{{{ $value }}}}",
            fleet,
            "target",
            (
                TierRule(
                    "critical",
                    f'{UP}{{job="{t.exporter_job}"}} == 0',
                    down.for_,
                    "Prometheus has failed to scrape the GPU exporter at "
                    f"{{{{ $labels.instance }}}}{_held(down.for_)}: the GPUs of {WHERE} are "
                    "unwatched.",
                    f'up{{job="{t.exporter_job}"}} == 0{_held(down.for_)}',
                ),
            ),
        ),
        Alert(
            "GpuExporterSourceDown",
            "exporter",
            "exporter",
            "A source of the GPU exporter is failing",
            "{{ or $labels.source $labels.backend }}",
            fleet,
            "target",
            (
                TierRule(
                    "warning",
                    f"{c.EXPORTER_SOURCE_UP} == 0 or {c.GPU_BACKEND_UP} == 0",
                    src.for_,
                    "The GPU exporter at {{ $labels.instance }} has had its source "
                    f"{{{{ or $labels.source $labels.backend }}}} down{_held(src.for_)}: its "
                    "series are missing.",
                    f"{c.EXPORTER_SOURCE_UP} == 0 or {c.GPU_BACKEND_UP} == 0{_held(src.for_)}",
                ),
            ),
        ),
        Alert(
            "GpuExporterStale",
            "exporter",
            "exporter",
            "GPU exporter data is stale",
            SECONDS,
            fleet,
            "target",
            (
                TierRule(
                    "warning",
                    f"timestamp({c.EXPORTER_LAST_COLLECT_TIMESTAMP}) - "
                    f"{c.EXPORTER_LAST_COLLECT_TIMESTAMP} > {num(stale.after.seconds)}",
                    stale.for_,
                    "The GPU exporter at {{ $labels.instance }} served a snapshot collected "
                    f"{SECONDS} before the scrape, older than {stale.after}{_held(stale.for_)}: "
                    "its collection loop is stuck.",
                    f"snapshot age at scrape time > {stale.after}{_held(stale.for_)}",
                ),
            ),
        ),
        Alert(
            "Watchdog",
            "exporter",
            "exporter",
            "Always firing: the alerting pipeline works",
            "{{ $value }}",
            fleet,
            "global",
            (
                TierRule(
                    "none",
                    "vector(1)",
                    Duration(0),
                    "This alert always fires, to prove that Prometheus evaluates the rules and "
                    "Alertmanager delivers them. Route it to a dead man's switch, which pages "
                    "when it stops arriving.",
                    "always",
                ),
            ),
        ),
    ]


#: Rule group name suffix → the alerts in it, in file order.
GROUPS = ("gpu", "allocator", "inference", "exporter")


def all_alerts(t: Thresholds) -> list[Alert]:
    """Every alert, in rule-file order."""
    return gpu_alerts(t) + allocator_alerts(t) + inference_alerts(t) + exporter_alerts(t)
