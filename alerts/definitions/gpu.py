"""GPU alerts: memory, heat, clocks and power, faults that latch, and GPUs that vanish.

Principles (issue 11): a fault that holds until someone acts follows a state (the driver's
recovery action, the volatile ECC count, a row-remap flag, fewer links than the GPU's peers)
instead of an `increase()` window that resolves while the GPU is still broken; what vanishes
with a fault (a GPU, a node's GPU count) is compared with what was there; states that come
and go alert on their share of time.
"""

from __future__ import annotations

from alerts.definitions.common import (
    GPU,
    NUMBER,
    PERCENT,
    SECONDS,
    WHERE,
    either,
    held,
    max_by,
    num,
    pct,
    regex_of,
    tier_above,
    two_tiers,
)
from alerts.definitions.records import GPU_COUNT, NVLINK_LINKS_UP, XID_CRITICAL, gpu_count_expr
from alerts.model import Alert, TierRule
from alerts.thresholds import Thresholds
from exporter import catalog as c
from exporter.xid_catalog import BUCKETS, XID_CATALOG

RECOVERY_ACTIONS = {1: "a GPU reset", 2: "a node reboot", 3: "draining peer-to-peer traffic"}
RECOVERY_ACTIONS[4] = "draining its work, then a GPU reset"


def _recovery_action_template() -> str:
    """Go template: the recovery action named by the alert's value."""
    branches = " ".join(
        f'{"if" if i == 0 else "else if"} eq (printf "%.0f" $value) "{code}" }}}}{text}{{{{'
        for i, (code, text) in enumerate(sorted(RECOVERY_ACTIONS.items()))
    )
    return "{{ " + branches + " else }}an action the exporter does not know{{ end }}"


def _xid_template(codes: list[int]) -> str:
    """Go template: the description and bucket of the alert's xid label, among `codes`."""
    branches = " ".join(
        f'{"if" if i == 0 else "else if"} eq $labels.xid "{code}" }}}}'
        f"{XID_CATALOG[code].description} [{XID_CATALOG[code].bucket}: "
        f"{BUCKETS.get(XID_CATALOG[code].bucket, 'see the Xid catalog')}]{{{{"
        for i, code in enumerate(codes)
    )
    if not branches:
        return "an Xid outside NVIDIA's catalog [see the Xid catalog]"
    return (
        "{{ " + branches + " else }}an Xid outside NVIDIA's catalog [see the Xid catalog]{{ end }}"
    )


def memory_alerts(t: Thresholds) -> list[Alert]:
    mem = t.links.memory_dashboard
    fill = t.gpu_memory_filling
    used_ratio = f"{c.GPU_MEMORY_USED} / {c.GPU_MEMORY_TOTAL}"
    return [
        Alert(
            "GpuMemoryHigh",
            "gpu",
            "gpu",
            "GPU memory is nearly full",
            PERCENT,
            mem,
            "gpu",
            two_tiers(
                max_by("gpu", used_ratio),
                t.gpu_memory_used,
                f"{GPU} has {PERCENT} of its memory in use, above <threshold><for>: "
                "the next large allocation may fail with out of memory. Engines that "
                "preallocate memory by design belong in a thresholds scope.",
                "memory used / total > <threshold><for>",
                pct,
            ),
            key="gpu_memory_used",
            clears="memory used falls below the threshold",
        ),
        Alert(
            "GpuMemoryFillingUp",
            "gpu",
            "gpu",
            "GPU memory will be full soon at the current rate",
            SECONDS,
            mem,
            "gpu",
            (
                TierRule(
                    "warning",
                    max_by(
                        "gpu",
                        f"({c.GPU_MEMORY_FREE} / -deriv({c.GPU_MEMORY_FREE}[{fill.window}]) "
                        f">= 0 < {num(fill.horizon.seconds)})"
                        f" and (deriv({c.GPU_MEMORY_FREE}[{fill.recent}]) < 0)"
                        f" and ({used_ratio} > {num(fill.min_used)})",
                    ),
                    fill.for_,
                    f"{GPU}: at the rate of the last {fill.window} its free memory runs out in "
                    f"{SECONDS} (within {fill.horizon}), it kept shrinking over every "
                    f"{fill.recent}{held(fill.for_)} and more than {pct(fill.min_used)} is "
                    "used: a leak or a growing cache, not a model load.",
                    f"free memory at its {fill.window} rate reaches 0 within {fill.horizon}, "
                    f"still falling over {fill.recent}, used > "
                    f"{pct(fill.min_used)}{held(fill.for_)}",
                ),
            ),
            key="gpu_memory_filling",
            clears="free memory stops falling",
        ),
    ]


def thermal_power_alerts(t: Thresholds) -> list[Alert]:
    detail = t.links.detail_dashboard
    slow, power = t.gpu_clock_slowdown, t.gpu_power_capped
    step = power.window.scaled(1 / 30)
    power_share = (
        f"avg_over_time(({c.GPU_POWER} / {c.GPU_POWER_LIMIT} >= bool {num(power.ratio)})"
        f"[{power.window}:{step}])"
        f' or rate({c.GPU_CLOCK_EVENT_SECONDS}{{reason="sw_power_cap"}}[{power.window}])'
    )
    return [
        Alert(
            "GpuTemperatureHigh",
            "gpu",
            "gpu",
            "GPU is overheating",
            "{{ $value | humanize }} °C",
            detail,
            "gpu",
            two_tiers(
                max_by(
                    "gpu",
                    f'avg_over_time({c.GPU_TEMPERATURE}{{sensor="gpu"}}[{t.gpu_temperature_window}])',
                ),
                t.gpu_temperature,
                f"{GPU} averaged {{{{ $value | humanize }}}} °C over {t.gpu_temperature_window}, "
                "above <threshold><for>: the driver slows its clocks down to cool it, and "
                "shuts it down past its limit.",
                f"die temperature (mean over {t.gpu_temperature_window}) > <threshold><for>",
                lambda x: f"{num(x)} °C",
            ),
            key="gpu_temperature",
            clears="the mean temperature falls below the threshold",
        ),
        Alert(
            "GpuClockSlowdown",
            "gpu",
            "gpu",
            "GPU clocks are held down by thermal or hardware slowdown",
            PERCENT,
            detail,
            "gpu",
            (
                tier_above(
                    "warning",
                    max_by(
                        "gpu",
                        f'rate({c.GPU_CLOCK_EVENT_SECONDS}{{reason=~"{regex_of(slow.reasons)}"}}'
                        f"[{slow.window}])",
                    ),
                    type(t.gpu_memory_used.warning)(slow.share, slow.for_),
                    f"{GPU} had its clocks held down by {either(slow.reasons)} {PERCENT} of "
                    f"the last {slow.window}<for>: it runs slower than it should.",
                    f"{either(slow.reasons)} active more than <threshold> of {slow.window}<for>",
                    pct,
                ),
            ),
            key="gpu_clock_slowdown",
            clears="the share of time throttled falls below the threshold",
        ),
        Alert(
            "GpuPowerAtLimit",
            "gpu",
            "gpu",
            "GPU is capped by its power limit most of the time",
            PERCENT,
            detail,
            "gpu",
            (
                tier_above(
                    "warning",
                    max_by("gpu", power_share),
                    type(t.gpu_memory_used.warning)(power.share, power.for_),
                    f"{GPU} drew at least {pct(power.ratio)} of its enforced power limit (or "
                    f"had its clocks capped for power) {PERCENT} of the last {power.window}"
                    "<for>: its clocks are capped by power, not by work.",
                    f"power >= {pct(power.ratio)} of the limit, or sw_power_cap, more than "
                    f"<threshold> of {power.window}<for>",
                    pct,
                ),
            ),
            key="gpu_power_capped",
            clears="the share of time capped falls below the threshold",
        ),
    ]


def vanishing_alerts(t: Thresholds) -> list[Alert]:
    detail, fleet = t.links.detail_dashboard, t.links.fleet_dashboard
    missing = t.gpu_missing
    return [
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
                    max_by("gpu", f"{c.GPU_UP}")
                    + " == 0 or ("
                    + max_by("gpu", f"avg_over_time({c.GPU_UP}[{t.gpu_lost.flapping_window}])")
                    + f" < {num(t.gpu_lost.flapping_share)} and "
                    + max_by("gpu", f"changes({c.GPU_UP}[{t.gpu_lost.flapping_window}])")
                    + " >= 4)",
                    t.gpu_lost.for_,
                    f"{GPU} has not answered the driver{held(t.gpu_lost.for_)} (fallen off "
                    "the bus, Xid 79, or failing): its work is lost until the GPU is reset or "
                    "the node rebooted. Alertmanager silences the GPU's other alerts and the "
                    "node's inference alerts.",
                    f"{c.GPU_UP} == 0, or up less than {pct(t.gpu_lost.flapping_share)} of "
                    f"{t.gpu_lost.flapping_window} with 4 changes or more (flapping)"
                    f"{held(t.gpu_lost.for_)}",
                ),
            ),
            key="gpu_lost",
            clears="the GPU answers again",
        ),
        Alert(
            "GpuMissing",
            "gpu",
            "gpu",
            "A node has fewer GPUs than it had",
            "{{ $value }} GPUs",
            fleet,
            "node",
            (
                TierRule(
                    "critical",
                    f"({gpu_count_expr()}) < on (cluster, node) "
                    f"max_over_time({GPU_COUNT}[{missing.lookback}])",
                    missing.for_,
                    f"The exporter on {WHERE} sees {{{{ $value }}}} GPUs, fewer than it saw "
                    f"within the last {missing.lookback}{held(missing.for_)}: a GPU fell off "
                    "the bus before the exporter started, or the GPU source hangs and its "
                    "series are gone.",
                    f"GPUs seen < their maximum over {missing.lookback}{held(missing.for_)}",
                ),
            ),
            key="gpu_missing",
            clears=f"the node has its GPUs back, or {missing.lookback} after it lost them",
        ),
    ]


def latched_alerts(t: Thresholds) -> list[Alert]:
    detail = t.links.detail_dashboard
    xid = t.gpu_xid
    by_severity: dict[str, list[int]] = {}
    for code, info in XID_CATALOG.items():
        by_severity.setdefault(xid.severity_of(info.bucket), []).append(code)
    known = regex_of(sorted(XID_CATALOG))
    keep = {"critical": xid.keep_critical, "warning": xid.keep_warning}
    xid_tiers = []
    for severity in ("critical", "warning", "info"):
        codes = sorted(by_severity.get(severity, []))
        increases = [f'increase({c.GPU_XID_ERRORS}{{xid=~"{regex_of(codes)}"}}[{xid.window}])']
        if not codes:
            increases = []
        if severity == xid.unknown_severity:
            increases.append(f'increase({c.GPU_XID_ERRORS}{{xid!~"{known}"}}[{xid.window}])')
        if not increases:
            continue
        buckets = sorted({XID_CATALOG[code].bucket for code in codes})
        keeps = keep.get(severity)
        if severity == "critical":
            # Latched over the recorded events, not with keep_firing_for: a GPU whose driver
            # exports its recovery action clears it as soon as the action is done (after the
            # reboot that fixes a GPU lost with Xid 79, too); without one it holds `keeps`.
            xid_tiers.append(
                TierRule(
                    severity,
                    f"max_over_time({XID_CRITICAL}[{keeps}]) unless on (cluster, node, uuid) "
                    f"({c.GPU_RECOVERY_ACTION} == 0)",
                    xid.window.scaled(0),
                    f"{GPU} reported Xid {{{{ $labels.xid }}}}: {_xid_template(codes)}. "
                    f"{NUMBER} event(s) within {xid.window}; the alert holds {keeps} after "
                    "the last one, or until the driver's recovery action says none is needed.",
                    f"an Xid of bucket {either(buckets)} within {keeps}, unless the GPU's "
                    "recovery action says none",
                    keep_firing_for=xid.window.scaled(0),
                )
            )
            continue
        xid_tiers.append(
            TierRule(
                severity,
                max_by("gpu", " or ".join(increases), "xid") + " > 0",
                xid.window.scaled(0),
                f"{GPU} reported Xid {{{{ $labels.xid }}}}: {_xid_template(codes)}. "
                f"{NUMBER} event(s) in the last {xid.window}"
                + (
                    f"; the alert stays {keeps} after the last one (GpuRecoveryActionRequired "
                    "follows the state where the driver exports it)."
                    if keeps
                    else "."
                ),
                f"an Xid of bucket {either(buckets)}"
                + (" or one outside the catalog" if severity == xid.unknown_severity else "")
                + f" within {xid.window}",
                keep_firing_for=keeps,
            )
        )
    state = [
        (
            "GpuEccUncorrectableErrors",
            "GPU memory has uncorrectable ECC errors",
            max_by("gpu", f'{c.GPU_ECC_ERRORS}{{type="uncorrected"}}') + " > 0",
            t.gpu_ecc_uncorrectable.for_,
            f"{GPU} counted {NUMBER} uncorrectable ECC error(s) since the driver loaded: data "
            "in its memory was corrupted; restart the process that used it and reset the GPU "
            "(the volatile count clears with the reset).",
            "uncorrected ECC errors since the driver loaded > 0",
            "gpu_ecc_uncorrectable",
            "the GPU is reset (the volatile ECC count returns to 0)",
        ),
        (
            "GpuRowRemapFailure",
            "GPU failed to remap a memory row: replace it",
            max_by("gpu", f"{c.GPU_ROW_REMAP_FAILURE}") + " > 0",
            t.gpu_row_remap_failure.for_,
            f"{GPU} failed to remap a faulty memory row: it has run out of spare rows and "
            "should be replaced.",
            f"{c.GPU_ROW_REMAP_FAILURE} > 0",
            "gpu_row_remap_failure",
            "the GPU is replaced",
        ),
    ]
    alerts = [
        Alert(
            "GpuRecoveryActionRequired",
            "gpu",
            "gpu",
            "The driver says the GPU needs a reset, a reboot or a drain",
            "{{ $value }}",
            detail,
            "gpu",
            (
                TierRule(
                    "critical",
                    max_by("gpu", f"{c.GPU_RECOVERY_ACTION}") + " > 0",
                    t.gpu_recovery_action.for_,
                    f"{GPU} needs {_recovery_action_template()} before work can use it "
                    f"again (the driver's recovery action, {c.GPU_RECOVERY_ACTION}="
                    "{{ $value }}): it stays set until that is done.",
                    f"{c.GPU_RECOVERY_ACTION} > 0 (1 reset, 2 reboot, 3 drain P2P, 4 drain "
                    "and reset)",
                ),
            ),
            key="gpu_recovery_action",
            clears="the recovery action is done and the driver reports none",
        ),
        Alert(
            "GpuXidError",
            "gpu",
            "gpu",
            "GPU reported an Xid error",
            "Xid {{ $labels.xid }}",
            detail,
            "gpu",
            tuple(xid_tiers),
            key="gpu_xid",
            clears=f"{xid.keep_critical} (critical) or {xid.keep_warning} (warning) after the "
            "last event",
        ),
    ]
    for name, summary, expr, for_, describe, condition, key, clears in state:
        severity = "critical"
        alerts.append(
            Alert(
                name,
                "gpu",
                "gpu",
                summary,
                NUMBER,
                detail,
                "gpu",
                (TierRule(severity, expr, for_, describe, condition + held(for_)),),
                key=key,
                clears=clears,
            )
        )
    alerts.append(
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
                    max_by("gpu", f"{c.GPU_ROW_REMAP_PENDING}") + " > 0",
                    t.gpu_row_remap_pending.for_,
                    f"{GPU} has a memory row remap pending"
                    f"{held(t.gpu_row_remap_pending.for_)}: it takes effect at the next GPU "
                    "reset; unaffected work keeps running, reset when convenient.",
                    f"{c.GPU_ROW_REMAP_PENDING} > 0{held(t.gpu_row_remap_pending.for_)}",
                ),
            ),
            key="gpu_row_remap_pending",
            clears="the GPU is reset and the remap applied",
        )
    )
    return alerts


def link_alerts(t: Thresholds) -> list[Alert]:
    detail = t.links.detail_dashboard
    nvl, nerr, pcie = t.gpu_nvlink_down, t.gpu_nvlink_errors, t.gpu_pcie_replays
    return [
        Alert(
            "GpuNvlinkDown",
            "gpu",
            "gpu",
            "GPU has fewer NVLink links up than its peers",
            "{{ $value }} links up",
            detail,
            "gpu",
            (
                TierRule(
                    "critical",
                    f"{NVLINK_LINKS_UP} < on (cluster, node) group_left "
                    f"max by (cluster, node) ({NVLINK_LINKS_UP}) or {NVLINK_LINKS_UP} == 0",
                    nvl.for_,
                    f"{GPU} has {{{{ $value }}}} NVLink links up, fewer than the other GPUs "
                    f"of the node (or none){held(nvl.for_)}: collective operations fall back "
                    "to PCIe or fail.",
                    f"links up < the most links up on a GPU of the node, or 0{held(nvl.for_)}",
                ),
            ),
            key="gpu_nvlink_down",
            clears="the GPU has as many links up as its peers",
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
                    max_by(
                        "gpu",
                        f"sum without (type) (increase({c.GPU_NVLINK_ERRORS}[{nerr.window}]))",
                    )
                    + f" > {num(nerr.threshold)}",
                    nerr.for_,
                    f"{GPU} counted {NUMBER} NVLink errors in the last {nerr.window}, and "
                    f"they kept coming{held(nerr.for_)}: a link is degrading.",
                    f"NVLink errors increase over {nerr.window} > {num(nerr.threshold)}"
                    f"{held(nerr.for_)}",
                ),
            ),
            key="gpu_nvlink_errors",
            clears="no new errors for the window",
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
                    max_by("gpu", f"increase({c.GPU_PCIE_REPLAYS}[{pcie.window}])")
                    + f" > {num(pcie.threshold)}",
                    pcie.for_,
                    f"{GPU} counted {NUMBER} PCIe replays in the last {pcie.window}, and they "
                    f"kept coming{held(pcie.for_)}: its PCIe link is retransmitting "
                    "(riser, slot or signal integrity).",
                    f"PCIe replays increase over {pcie.window} > {num(pcie.threshold)}"
                    f"{held(pcie.for_)}",
                ),
            ),
            key="gpu_pcie_replays",
            clears="no new replays for the window",
        ),
    ]


def gpu_alerts(t: Thresholds) -> list[Alert]:
    return (
        memory_alerts(t)
        + thermal_power_alerts(t)
        + vanishing_alerts(t)
        + latched_alerts(t)
        + link_alerts(t)
    )
