"""The inference layer: the figures of every engine (exporter/engines.py: the canary, vLLM,
SGLang) recorded as one set of `inference:*` series, labelled `engine` and `model`, at the
identity of one engine (cluster, node, namespace, job): what the inference alerts and the LLM
dashboard read, whichever engine serves.

One rule per figure, engine and window, all recording the same name (the `engine` label keeps
them apart). Gauges are summed over an engine's servers on a node (the worst of them for the KV
cache and readiness), counters become rates, histograms bucket rates summed `by (le, ...)` in the
engine's own layout (never mixed with another engine's). The SLO windows get the rates of
requests, failed requests and latency observations within their targets, so a burn rate over
3d reads the engines' counters over 3d. A latency target that is not a bucket bound of an
engine is estimated between the two bounds around it, as `histogram_quantile` assumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alerts.definitions.common import le_regex, num, regex_of
from alerts.model import IDENTITY, RecordingRule
from alerts.thresholds import Duration, Thresholds
from exporter.catalog import Kind
from exporter.engines import ENGINES, Engine, EngineMetric, Figure, Provision

LEVEL = "inference"
#: What every per-engine rule keeps: an engine's identity, the engine label added last.
KEEP = tuple(label for label in IDENTITY["engine"] if label != "engine")
#: How a gauge is read over an engine's servers on one node (two pods during a rollout, the
#: replicas of a deployment): requests add up, the KV cache is as full as the fullest.
GAUGE_AGGREGATION = {
    Figure.RUNNING: "sum",
    Figure.WAITING: "sum",
    Figure.KV_CACHE: "max",
    Figure.KV_FRAGMENTATION: "max",
    Figure.READY: "max",  # ready while one of them is: a rollout's new pod loads its model
}
#: The latency figures that have a service-level objective, with the thresholds key of it.
SLO_FIGURES = {
    Figure.TIME_TO_FIRST_TOKEN: "inference_ttft_slo",
    Figure.INTER_TOKEN_LATENCY: "inference_tpot_slo",
}
HISTOGRAMS = (
    Figure.TIME_TO_FIRST_TOKEN,
    Figure.INTER_TOKEN_LATENCY,
    Figure.REQUEST_DURATION,
    Figure.QUEUE_DURATION,
)


# --- the names of the layer's series ------------------------------------------------------------


def gauge(figure: Figure) -> str:
    """`inference:requests_running:sum`."""
    return f"{LEVEL}:{figure}:{GAUGE_AGGREGATION[figure]}"


def rate(figure: Figure, window: Duration) -> str:
    """`inference:preemptions:rate5m`: a counter figure per second over `window`."""
    return f"{LEVEL}:{figure}:rate{window}"


def buckets(figure: Figure, window: Duration) -> str:
    """`inference:time_to_first_token_seconds_bucket:rate5m`, by `le`."""
    return f"{LEVEL}:{figure}_bucket:rate{window}"


def observations(figure: Figure, window: Duration) -> str:
    """`inference:time_to_first_token_seconds_count:rate1h`: observations per second."""
    return f"{LEVEL}:{figure}_count:rate{window}"


def within_target(figure: Figure, window: Duration) -> str:
    """`inference:time_to_first_token_seconds_within_target:rate1h`: observations at or under
    the objective's target per second."""
    return f"{LEVEL}:{figure}_within_target:rate{window}"


def slo_windows(t: Thresholds) -> list[Duration]:
    """Every window a burn-rate alert reads, plus the per-engine rate window."""
    windows = {t.inference_rate_window}
    for w in (*t.inference_slo.page, *t.inference_slo.ticket):
        windows.update((w.long, w.short))
    return sorted(windows, key=lambda d: d.seconds)


def counter_windows(figure: Figure, t: Thresholds) -> list[Duration]:
    """The windows the alerts and the dashboard read a counter figure over."""
    windows = {
        Figure.PREEMPTIONS: {t.inference_preemptions.window},
        Figure.PROMPT_TOKENS: {t.inference_rate_window},
        Figure.GENERATION_TOKENS: {t.inference_rate_window, t.inference_engine_stuck.window},
        Figure.REQUESTS: set(slo_windows(t)),
        Figure.REQUEST_ERRORS: set(slo_windows(t)),
    }[figure]
    return sorted(windows, key=lambda d: d.seconds)


# --- one engine's expression for one figure -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    """How a figure is read from one metric name: the series suffix, extra matchers and the
    function around the selector."""

    suffix: str = ""
    le: float | None = None
    around: Callable[[str], str] = lambda s: s


def _matchers(e: Engine, p: Provision, t: Thresholds, le: float | None) -> str:
    parts = [p.matchers.replace("{error_outcomes}", regex_of(t.inference_error_outcomes))]
    if le is not None:
        parts.append(f'le=~"{le_regex(le)}"')
    return ", ".join(x for x in parts if x)


def _one_name(e: Engine, p: Provision, m: EngineMetric, read: _Read, t: Thresholds) -> str:
    matchers = _matchers(e, p, t, read.le)
    selector = f"{m.name}{read.suffix}" + (f"{{{matchers}}}" if matchers else "")
    expr = read.around(selector)
    if p.ranks:  # every rank reports the same requests: count them once
        expr = f"max without ({', '.join(p.ranks)}) ({expr})"
    return expr


def model_join(e: Engine) -> str:
    """`job_instance:vllm_model:info`: the model each scrape target of an engine serves, for
    the metrics that do not carry it (recorded once, joined by every rule that needs it)."""
    return f"job_instance:{e.name}_model:info"


def _model_join_rule(e: Engine) -> RecordingRule | None:
    join = e.model_join
    if join is None:
        return None
    source = join.metric.name
    if join.label != "model":
        source = f'label_replace({source}, "model", "$1", "{join.label}", "(.*)")'
    expr = f"group by (job, instance, model) ({source})"
    if join.optional:  # every target that exposes any of the engine's series
        names = [
            m.name + ("_count" if m.kind is Kind.HISTOGRAM else "")
            for m in e.metrics
            if m is not join.metric
        ]
        expr += f" or on (job, instance) group by (job, instance) ({' or '.join(names)})"
    return RecordingRule(
        model_join(e),
        expr,
        f"the model each {e.title} target serves"
        + (" (no model label until it says)" if join.optional else ""),
    )


def _with_model(e: Engine, m: EngineMetric, expr: str) -> str:
    """`expr` with a `model` label: the engine's model label renamed, or joined in from the
    target's model series."""
    if e.model_label and e.model_label in m.labels:
        return f'label_replace({expr}, "model", "$1", "{e.model_label}", "(.*)")'
    assert e.model_join is not None, f"{e.name}: {m.name} has no model label and no model join"
    return f"{expr} * on (job, instance) group_left (model) {model_join(e)}"


def engine_expr(
    e: Engine, figure: Figure, read: _Read, t: Thresholds, aggregate: str = "sum"
) -> str:
    """One engine's figure at an engine's identity, labelled `engine` and `model`: the current
    metric name, else its deprecated alias; the model label; aggregated `by` the identity (and
    `le` for bucket rates)."""
    p = e.provides[figure]
    names = [_one_name(e, p, m, read, t) for m in p.metrics]
    read_expr = names[0] if len(names) == 1 else "(" + " or ".join(names) + ")"
    keep = (*KEEP, "le") if read.suffix == "_bucket" and read.le is None else KEEP
    # every alias has the first one's labels (exporter.engines checks it)
    inner = _with_model(e, p.metrics[0], read_expr)
    return f"{aggregate} by ({', '.join(keep)}) ({inner})"


def _rate(window: Duration) -> Callable[[str], str]:
    return lambda s: f"rate({s}[{window}])"


def _within_expr(e: Engine, figure: Figure, target: float, window: Duration, t: Thresholds) -> str:
    """Observations at or under `target` per second: the bucket of that bound, or, between two
    bounds of the engine's layout, the share of the bucket above the lower one that lies under
    the target (observations spread evenly inside a bucket)."""
    layout = e.provides[figure].metrics[0].buckets
    if target in layout:
        return engine_expr(e, figure, _Read("_bucket", target, _rate(window)), t)
    above = [b for b in layout if b > target]
    below = [b for b in layout if b < target]
    key = SLO_FIGURES[figure]
    if not above or not below:
        raise ValueError(
            f"{key}.target: {target:g}s lies outside the buckets of {e.title}'s "
            f"{e.provides[figure].metrics[0].name} ({layout[0]:g}s to {layout[-1]:g}s): no "
            "share of its observations can be estimated under it"
        )
    lo, hi = below[-1], above[0]
    share = round((target - lo) / (hi - lo), 9)
    low = engine_expr(e, figure, _Read("_bucket", lo, _rate(window)), t)
    high = engine_expr(e, figure, _Read("_bucket", hi, _rate(window)), t)
    return f"{low} * {num(round(1 - share, 9))} + {high} * {num(share)}"


# --- the rules ----------------------------------------------------------------------------------


def _rule(record: str, e: Engine, expr: str, help: str) -> RecordingRule:
    """One engine's rule of a layer series: the `engine` label is the rule's own, so the rules
    of the engines recording one name stay apart."""
    return RecordingRule(record, expr, f"{help} ({e.title})", (("engine", e.name),))


def engine_rules(e: Engine, t: Thresholds) -> list[RecordingRule]:
    """Every layer series one engine provides (after its model join, if it has one)."""
    join = _model_join_rule(e)
    rules: list[RecordingRule] = [join] if join else []
    w = t.inference_rate_window
    for figure, aggregate in GAUGE_AGGREGATION.items():
        if figure in e.provides:
            rules.append(
                _rule(
                    gauge(figure),
                    e,
                    engine_expr(e, figure, _Read(), t, aggregate),
                    f"{figure.replace('_', ' ')}, {aggregate} over the engine's servers",
                )
            )
    for figure in (
        Figure.PREEMPTIONS,
        Figure.PROMPT_TOKENS,
        Figure.GENERATION_TOKENS,
        Figure.REQUESTS,
        Figure.REQUEST_ERRORS,
    ):
        if figure in e.provides:
            for window in counter_windows(figure, t):
                expr = engine_expr(e, figure, _Read(around=_rate(window)), t)
                if figure is Figure.REQUEST_ERRORS:  # 0, not nothing, before the first failure
                    requests = f'{rate(Figure.REQUESTS, window)}{{engine="{e.name}"}}'
                    expr = f"{expr} or sum without (engine) ({requests}) * 0"
                rules.append(
                    _rule(
                        rate(figure, window),
                        e,
                        expr,
                        f"{figure.replace('_', ' ')} per second over {window}",
                    )
                )
    for figure in HISTOGRAMS:
        if figure in e.provides:
            rules.append(
                _rule(
                    buckets(figure, w),
                    e,
                    engine_expr(e, figure, _Read("_bucket", around=_rate(w)), t),
                    f"{figure} bucket rates over {w}, in the engine's bucket layout",
                )
            )
    for figure, key in SLO_FIGURES.items():
        if figure not in e.provides:
            continue
        target = getattr(t, key).target
        for window in slo_windows(t):
            rules.append(
                _rule(
                    observations(figure, window),
                    e,
                    engine_expr(e, figure, _Read("_count", around=_rate(window)), t),
                    f"{figure} observations per second over {window}",
                )
            )
            rules.append(
                _rule(
                    within_target(figure, window),
                    e,
                    _within_expr(e, figure, target, window, t),
                    f"{figure} observations at or under {target:g}s per second over {window}",
                )
            )
    return rules


def layer_rules(t: Thresholds) -> list[RecordingRule]:
    """The whole layer: every engine's series, engine after engine."""
    return [r for e in ENGINES for r in engine_rules(e, t)]


def layer_records(t: Thresholds) -> dict[Figure, list[str]]:
    """The series names of each figure (several for the windows of a counter)."""
    w = t.inference_rate_window
    out: dict[Figure, list[str]] = {}
    for figure in Figure:
        if figure in GAUGE_AGGREGATION:
            out[figure] = [gauge(figure)]
        elif figure in HISTOGRAMS:
            out[figure] = [buckets(figure, w)]
            if figure in SLO_FIGURES:
                out[figure] += [observations(figure, x) for x in slo_windows(t)]
                out[figure] += [within_target(figure, x) for x in slo_windows(t)]
        else:
            out[figure] = [rate(figure, x) for x in counter_windows(figure, t)]
    return out
