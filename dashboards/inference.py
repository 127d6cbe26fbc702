"""LLM inference: latency quantiles, throughput, queue, requests and errors, KV cache and
preemptions of every engine (the canary, vLLM, SGLang), read from the inference layer only
(alerts/definitions/layer.py), with `engine` and `model` variables."""

from __future__ import annotations

from alerts.definitions import layer, quantile_record
from alerts.definitions.records import error_ratio
from alerts.thresholds import Thresholds, Tier
from dashboards.panels import DashboardSpec, Panel, Query, Row, Threshold, tiers, warning_critical
from dashboards.queries import ENGINE, ENGINE_SERVICE
from exporter.engines import Figure

UID = "llm-inference"
#: What the panels need running: an inference engine (the canary, vLLM or SGLang).
NEEDS = "engine"
#: The layer series the dashboard's variables are read from (every engine provides it).
VARIABLE_SOURCE = layer.gauge(Figure.RUNNING)


def _latency(title: str, description: str, figure: Figure, level: Tier) -> Panel:
    """Service-level p50 and p99 and each engine's p99, from the recording rules the alerts
    read (`sum by (le, ...)` before the quantile), with the per-engine warning level."""
    return Panel(
        title,
        description,
        "s",
        (
            Query(
                f"{quantile_record('service', figure, 'p50')}{{{ENGINE_SERVICE}}}",
                "p50 {{job}} {{engine}} {{model}}",
            ),
            Query(
                f"{quantile_record('service', figure, 'p99')}{{{ENGINE_SERVICE}}}",
                "p99 {{job}} {{engine}} {{model}}",
            ),
            Query(
                f"{quantile_record('engine', figure, 'p99')}{{{ENGINE}}}",
                "p99 {{node}} {{engine}}",
            ),
        ),
        thresholds=(Threshold(level.threshold, "orange"),),
        min=0,
        width=8,
        needs=NEEDS,
    )


def dashboard(t: Thresholds) -> DashboardSpec:
    budget = t.inference_slo.budget
    page = max(w.factor for w in t.inference_slo.page)
    w = t.inference_rate_window
    items: tuple[Panel | Row, ...] = (
        Row("Latency"),
        _latency(
            "Time to first token",
            "TTFT p50/p99 of the service and p99 of each engine: arrival to first generated "
            "token (queue + prefill). Line: the per-engine p99 warning.",
            Figure.TIME_TO_FIRST_TOKEN,
            t.inference_ttft_p99,
        ),
        _latency(
            "Inter-token latency",
            "Time per output token p50/p99 of the service and p99 of each engine: the gap "
            "between consecutive tokens of a request. Line: the per-engine p99 warning.",
            Figure.INTER_TOKEN_LATENCY,
            t.inference_tpot_p99,
        ),
        _latency(
            "End-to-end latency",
            "Request duration p50/p99 of the service and p99 of each engine, arrival to last "
            "token. Line: the per-engine p99 warning.",
            Figure.REQUEST_DURATION,
            t.inference_request_p99,
        ),
        Row("Load"),
        Panel(
            "Token throughput",
            f"Prompt tokens prefilled and tokens generated per second, over {w} (SGLang counts "
            "a request's tokens when it finishes).",
            "short",
            (
                Query(
                    f"{layer.rate(Figure.PROMPT_TOKENS, w)}{{{ENGINE}}}",
                    "prompt {{node}} {{engine}}",
                ),
                Query(
                    f"{layer.rate(Figure.GENERATION_TOKENS, w)}{{{ENGINE}}}",
                    "generated {{node}} {{engine}}",
                ),
            ),
            min=0,
            width=8,
            needs=NEEDS,
        ),
        Panel(
            "Running and waiting requests",
            "Requests in the running batch and waiting for admission; a waiting queue that "
            "keeps growing means the engine cannot keep up.",
            "short",
            (
                Query(f"{layer.gauge(Figure.RUNNING)}{{{ENGINE}}}", "running {{node}} {{engine}}"),
                Query(f"{layer.gauge(Figure.WAITING)}{{{ENGINE}}}", "waiting {{node}} {{engine}}"),
            ),
            min=0,
            width=8,
            needs=NEEDS,
        ),
        Panel(
            "Queue time",
            "Time requests waited before prefill, p50/p99 per engine.",
            "s",
            (
                Query(
                    f"{quantile_record('engine', Figure.QUEUE_DURATION, 'p50')}{{{ENGINE}}}",
                    "p50 {{node}} {{engine}}",
                ),
                Query(
                    f"{quantile_record('engine', Figure.QUEUE_DURATION, 'p99')}{{{ENGINE}}}",
                    "p99 {{node}} {{engine}}",
                ),
            ),
            min=0,
            width=8,
            needs=NEEDS,
        ),
        Panel(
            "Requests and errors",
            f"Requests that count for the error budget and those that failed, per second over "
            f"{w}: the canary's ok and failed outcomes, vLLM's 2xx and 5xx answers of its "
            "completion handlers, SGLang's finished requests (SGLang has no error count).",
            "reqps",
            (
                Query(
                    f"{layer.rate(Figure.REQUESTS, w)}{{{ENGINE}}}",
                    "requests {{node}} {{engine}}",
                ),
                Query(
                    f"{layer.rate(Figure.REQUEST_ERRORS, w)}{{{ENGINE}}}",
                    "failed {{node}} {{engine}}",
                ),
            ),
            min=0,
            width=12,
            needs=NEEDS,
        ),
        Panel(
            "Error ratio and budget",
            f"Failed requests over the requests that count, per service over {w} (the "
            f"recording rule the SLO alerts read). Orange: the error budget ({budget:.2%} of "
            f"requests); red: the fastest burn rate that pages ({page:g}x the budget).",
            "percentunit",
            (
                Query(
                    f"{error_ratio('service', w)}{{{ENGINE_SERVICE}}}",
                    "{{job}} {{engine}} {{model}}",
                ),
            ),
            thresholds=warning_critical(budget, page * budget),
            min=0,
            width=12,
            needs=NEEDS,
        ),
        Row("KV cache"),
        Panel(
            "KV cache utilization",
            "Used share of the KV cache (the canary's and vLLM's blocks, SGLang's token "
            "pool), against the KV-cache alert's levels; the canary sheds load above its shed "
            "threshold, vLLM and SGLang preempt.",
            "percentunit",
            (Query(f"{layer.gauge(Figure.KV_CACHE)}{{{ENGINE}}}", "{{node}} {{engine}}"),),
            thresholds=tiers(t.inference_kv_cache.tiers),
            min=0,
            max=1,
            width=8,
            needs=NEEDS,
        ),
        Panel(
            "KV cache fragmentation",
            "Share of the used blocks' token slots that hold no token (bounded by one block per "
            "sequence with paged attention). The canary only: vLLM and SGLang export no such "
            "figure.",
            "percentunit",
            (Query(f"{layer.gauge(Figure.KV_FRAGMENTATION)}{{{ENGINE}}}", "{{node}} {{engine}}"),),
            min=0,
            max=1,
            width=8,
            needs=NEEDS,
        ),
        Panel(
            "Preemptions",
            f"Requests preempted per second over {t.inference_preemptions.window} because the "
            "KV cache ran out mid-decode (vLLM's preemptions, SGLang's retractions): their "
            "work is recomputed.",
            "ops",
            (
                Query(
                    f"{layer.rate(Figure.PREEMPTIONS, t.inference_preemptions.window)}{{{ENGINE}}}",
                    "{{node}} {{engine}}",
                ),
            ),
            min=0,
            width=8,
            needs=NEEDS,
        ),
    )
    return DashboardSpec(
        UID,
        "LLM inference",
        "What users' tokens feel like on every engine (the canary, vLLM, SGLang): TTFT, "
        "inter-token and end-to-end latency, throughput, queue, requests and errors, and the "
        "KV cache.",
        items,
        variables=("cluster", "node", "job", "engine", "model"),
        variable_source=VARIABLE_SOURCE,
    )
