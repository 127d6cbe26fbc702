"""Inference alerts: service-level objectives page, per-engine figures warn.

Every expression reads the inference layer (alerts/definitions/layer.py), never an engine's
own names: the same alert fires for the canary, vLLM or SGLang, labelled with the `engine` and
the `model`. Error and latency objectives use the SRE workbook's multi-window,
multi-burn-rate alerts at service level (every engine behind one job), with a floor of finished
requests so a canary with a dozen requests cannot page. Per-engine p99s, error ratios,
preemptions and the KV cache are warnings. A stuck engine is judged by progress (requests in,
no token out and the KV cache not moving), not by GPU utilization.
"""

from __future__ import annotations

from collections.abc import Callable

from alerts.definitions import layer
from alerts.definitions.common import (
    ENGINE,
    NUMBER,
    PERCENT,
    SECONDS,
    SERVICE,
    held,
    num,
    pct,
    secs,
    tier_above,
    two_tiers,
)
from alerts.definitions.records import (
    LATENCY_HISTOGRAMS,
    error_ratio,
    quantile_record,
    requests_rate,
    slow_ratio,
)
from alerts.model import Alert, TierRule
from alerts.thresholds import BurnWindow, Duration, Slo, Thresholds
from exporter.engines import Figure

PACE = {
    "critical": "fast enough to exhaust it within days",
    "warning": "faster than it can afford over the month",
}


def _burn(
    ratio: Callable[[Duration], str], slo: Slo, budget: float, windows: tuple[BurnWindow, ...]
) -> str:
    """`(long > f*budget and short > f*budget and enough requests) or ...` over `windows`."""
    parts = []
    for w in windows:
        limit = num(round(w.factor * budget, 12))
        floor = f"{requests_rate(w.long)} * {num(w.long.seconds)}"
        parts.append(
            f"({ratio(w.long)} > {limit} and {ratio(w.short)} > {limit} "
            f"and {floor} >= {num(slo.min_requests)})"
        )
    return " or ".join(parts)


def _windows(windows: tuple[BurnWindow, ...]) -> str:
    return " or ".join(f"{w.long}/{w.short} at {w.factor:g}x" for w in windows)


def _slo_alert(
    name: str,
    summary: str,
    what: str,
    ratio: Callable[[Duration], str],
    objective: float,
    t: Thresholds,
    described: str = "",
) -> Alert:
    """`what` in words; `described`: the same as a template for the description (default
    `what`)."""
    slo = t.inference_slo
    budget = round(1 - objective, 12)
    tiers = []
    for severity, windows, for_ in (
        ("critical", slo.page, slo.page_for),
        ("warning", slo.ticket, slo.ticket_for),
    ):
        tiers.append(
            TierRule(
                severity,
                _burn(ratio, slo, budget, windows),
                for_,
                f"{SERVICE} has {PERCENT} of its requests {described or what} (objective: at most "
                f"{pct(budget)}): it burns its error budget "
                f"{PACE[severity]}"
                f" ({_windows(windows)}, at least {num(slo.min_requests)} requests).",
                f"{what} burn rate over {_windows(windows)} of a {pct(budget)} budget, at "
                f"least {num(slo.min_requests)} requests{held(for_)}",
            )
        )
    return Alert(
        name,
        "inference",
        "inference",
        summary,
        PERCENT,
        t.links.inference_dashboard,
        "service",
        tuple(tiers),
        key="inference_slo",
        clears="the short window's burn rate falls below the factor",
    )


def slo_alerts(t: Thresholds) -> list[Alert]:
    ttft, tpot = t.inference_ttft_slo, t.inference_tpot_slo
    return [
        _slo_alert(
            "InferenceErrorBudgetBurn",
            "Inference requests are failing fast enough to burn the error budget",
            f"failing ({', '.join(t.inference_error_outcomes)} for the canary, HTTP 5xx for vLLM)",
            lambda w: error_ratio("service", w),
            t.inference_slo.objective,
            t,
            "failing ("
            + f'{{{{ if eq $labels.engine "canary" }}}}{", ".join(t.inference_error_outcomes)}'
            + "{{ else }}HTTP 5xx{{ end }})",
        ),
        _slo_alert(
            "InferenceTimeToFirstTokenBudgetBurn",
            "Inference time to first token misses its objective",
            f"waiting longer than {secs(ttft.target)} for their first token",
            lambda w: slow_ratio(Figure.TIME_TO_FIRST_TOKEN, w),
            ttft.objective,
            t,
        ),
        _slo_alert(
            "InferenceTimePerOutputTokenBudgetBurn",
            "Inference token generation misses its speed objective",
            f"token gaps longer than {secs(tpot.target)}",
            lambda w: slow_ratio(Figure.INTER_TOKEN_LATENCY, w),
            tpot.objective,
            t,
        ),
    ]


def _enough(t: Thresholds, min_requests: float) -> str:
    """` and <at least min_requests counted requests in the rate window>` (per engine)."""
    w = t.inference_rate_window
    requests = layer.rate(Figure.REQUESTS, w)
    return f" and {requests} * {num(w.seconds)} >= {num(min_requests)}"


def engine_alerts(t: Thresholds) -> list[Alert]:
    dash = t.links.inference_dashboard
    w = t.inference_rate_window
    enough = _enough(t, t.inference_min_requests)
    floor_words = f", at least {num(t.inference_min_requests)} requests in {w}"
    latency = [
        (
            "InferenceRequestLatencyHigh",
            "Inference requests of one engine are slow end to end",
            "request_duration",
            t.inference_request_p99,
            "end-to-end request duration",
            "inference_request_p99",
        ),
        (
            "InferenceTimeToFirstTokenHigh",
            "One inference engine's time to first token is high",
            "time_to_first_token",
            t.inference_ttft_p99,
            "time to first token",
            "inference_ttft_p99",
        ),
        (
            "InferenceTimePerOutputTokenHigh",
            "One inference engine's time per output token is high",
            "inter_token_latency",
            t.inference_tpot_p99,
            "time per output token",
            "inference_tpot_p99",
        ),
    ]
    alerts = [
        Alert(
            name,
            "inference",
            "inference",
            summary,
            SECONDS,
            dash,
            "engine",
            (
                tier_above(
                    "warning",
                    f"({quantile_record('engine', LATENCY_HISTOGRAMS[hist], 'p99')}{enough})",
                    tier,
                    f"{ENGINE} has a p99 {what} of {SECONDS} over the last {w}, above "
                    "<threshold><for>. One engine, not the service: check its node and GPU.",
                    f"p99 {what} over {w} > <threshold>{floor_words}<for>",
                    secs,
                ),
            ),
            key=key,
            clears="the p99 falls below the threshold",
        )
        for name, summary, hist, tier, what, key in latency
    ]
    kv, backlog = t.inference_kv_cache, t.inference_queue_backlog
    pre, stuck = t.inference_preemptions, t.inference_engine_stuck
    alerts += [
        Alert(
            "InferenceErrorRatioHigh",
            "inference",
            "inference",
            "One inference engine fails many of its requests",
            PERCENT,
            dash,
            "engine",
            (
                tier_above(
                    "warning",
                    f"({error_ratio('engine', w)}{enough})",
                    t.inference_error_ratio,
                    f"{ENGINE} ended {PERCENT} of its requests "
                    f"{', '.join(t.inference_error_outcomes)} over the last {w}, above "
                    "<threshold><for>.",
                    f"failed / counted requests over {w} > <threshold>{floor_words}<for>",
                    pct,
                ),
            ),
            key="inference_error_ratio",
            clears="the error ratio falls below the threshold",
        ),
        Alert(
            "InferenceKvCacheHigh",
            "inference",
            "inference",
            "Inference KV cache is nearly full",
            PERCENT,
            dash,
            "engine",
            two_tiers(
                f"avg_over_time({layer.gauge(Figure.KV_CACHE)}[{kv.window}])",
                kv.tiers,
                f"{ENGINE} had {PERCENT} of its KV cache in use on average over "
                f"{kv.window}, above <threshold><for>: new requests wait for room (the canary "
                f"sheds them at {pct(t.inference_limits.kv_shed_utilization)}) and running "
                "ones are preempted.",
                f"KV cache utilization (mean over {kv.window}) > <threshold><for>",
                pct,
            ),
            key="inference_kv_cache",
            clears="the mean utilization falls below the threshold",
        ),
        Alert(
            "InferenceQueueBacklog",
            "inference",
            "inference",
            "Inference requests keep waiting: the queue never drains",
            NUMBER,
            dash,
            "engine",
            (
                TierRule(
                    "warning",
                    f"min_over_time({layer.gauge(Figure.WAITING)}[{backlog.window}])"
                    f" > {num(backlog.min_waiting)}",
                    backlog.for_,
                    f"{ENGINE} has had more than {num(backlog.min_waiting)} requests waiting at "
                    f"every moment of the last {backlog.window}{held(backlog.for_)} (at least "
                    f"{NUMBER}): it cannot keep up with the load, a full queue included.",
                    f"waiting never <= {num(backlog.min_waiting)} during {backlog.window}"
                    f"{held(backlog.for_)}",
                ),
            ),
            key="inference_queue_backlog",
            clears="the queue drains once",
        ),
        Alert(
            "InferencePreemptionsHigh",
            "inference",
            "inference",
            "Inference requests are being preempted",
            "{{ $value | humanize }}/s",
            dash,
            "engine",
            (
                tier_above(
                    "warning",
                    f"({layer.rate(Figure.PREEMPTIONS, pre.window)}{_enough(t, pre.min_requests)})",
                    type(t.inference_error_ratio)(pre.threshold, pre.for_),
                    f"{ENGINE} preempts {{{{ $value | humanize }}}} running requests per second "
                    f"(over {pre.window}), above <threshold>/s<for>: the KV cache is too small "
                    "for the batch, work is recomputed.",
                    f"preemptions per second over {pre.window} > <threshold>, at least "
                    f"{num(pre.min_requests)} requests in {w}<for>",
                ),
            ),
            key="inference_preemptions",
            clears="the preemption rate falls below the threshold",
        ),
        Alert(
            "InferenceEngineStuck",
            "inference",
            "inference",
            "Inference engine has requests but generates no tokens",
            NUMBER,
            dash,
            "engine",
            (
                TierRule(
                    "critical",
                    f"min_over_time(({layer.gauge(Figure.RUNNING)} + "
                    f"{layer.gauge(Figure.WAITING)})[{stuck.window}:]) > 0 "
                    f"and {layer.rate(Figure.GENERATION_TOKENS, stuck.window)} == 0 "
                    f"unless changes({layer.gauge(Figure.KV_CACHE)}[{stuck.window}]) > 0",
                    stuck.for_,
                    f"{ENGINE} has had requests running or waiting for {stuck.window} and "
                    f"generated no token in that time{held(stuck.for_)}, its KV cache "
                    "unchanged: it is hung.",
                    f"requests running or waiting throughout {stuck.window}, no token "
                    f"generated and the KV cache unchanged in it{held(stuck.for_)}",
                ),
            ),
            key="inference_engine_stuck",
            clears="a token is generated",
        ),
        Alert(
            "InferenceEngineNotReady",
            "inference",
            "inference",
            "Inference engine is not ready: it failed or never warmed up",
            "{{ $value }}",
            dash,
            "engine",
            (
                TierRule(
                    "warning",
                    f"{layer.gauge(Figure.READY)} == 0",
                    t.inference_engine_not_ready.for_,
                    f"{ENGINE} has not been ready{held(t.inference_engine_not_ready.for_)}: the "
                    "model failed to load or the engine failed; its API refuses requests.",
                    f"not ready{held(t.inference_engine_not_ready.for_)}",
                ),
            ),
            key="inference_engine_not_ready",
            clears="the engine is ready",
        ),
    ]
    return alerts


def inference_alerts(t: Thresholds) -> list[Alert]:
    return slo_alerts(t) + engine_alerts(t)
