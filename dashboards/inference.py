"""LLM inference: latency quantiles, throughput, queue, outcomes, KV cache and preemptions."""

from __future__ import annotations

from alerts.definitions import quantile_record
from alerts.definitions.records import error_ratio
from alerts.thresholds import Thresholds, Tier
from dashboards.panels import DashboardSpec, Panel, Query, Row, Threshold, tiers, warning_critical
from dashboards.queries import HOST, RATE, SERVICE, sel
from exporter import catalog as c

UID = "llm-inference"
HARNESS = "harness"


def _latency(title: str, description: str, histogram: c.MetricFamily, level: Tier) -> Panel:
    """Service-level p50 and p99 and each engine's p99, from the recording rules the alerts
    read (`sum by (le, ...)` before the quantile), with the per-engine warning level."""
    return Panel(
        title,
        description,
        "s",
        (
            Query(f"{quantile_record('service', histogram, 'p50')}{{{SERVICE}}}", "p50 {{job}}"),
            Query(f"{quantile_record('service', histogram, 'p99')}{{{SERVICE}}}", "p99 {{job}}"),
            Query(f"{quantile_record('instance', histogram, 'p99')}{{{HOST}}}", "p99 {{node}}"),
        ),
        thresholds=(Threshold(level.threshold, "orange"),),
        min=0,
        width=8,
        needs=HARNESS,
    )


def dashboard(t: Thresholds) -> DashboardSpec:
    budget = t.inference_slo.budget
    page = max(w.factor for w in t.inference_slo.page)
    items: tuple[Panel | Row, ...] = (
        Row("Latency"),
        _latency(
            "Time to first token",
            "TTFT p50/p99 of the service and p99 of each engine: arrival to first generated "
            "token (queue + prefill). Line: the per-engine p99 warning.",
            c.INFERENCE_TIME_TO_FIRST_TOKEN,
            t.inference_ttft_p99,
        ),
        _latency(
            "Time per output token",
            "TPOT p50/p99 of the service and p99 of each engine: the gap between consecutive "
            "tokens of a request. Line: the per-engine p99 warning.",
            c.INFERENCE_TIME_PER_OUTPUT_TOKEN,
            t.inference_tpot_p99,
        ),
        _latency(
            "End-to-end latency",
            "Request duration p50/p99 of the service and p99 of each engine, arrival to last "
            "token. Line: the per-engine p99 warning.",
            c.INFERENCE_REQUEST_DURATION,
            t.inference_request_p99,
        ),
        Row("Load"),
        Panel(
            "Token throughput",
            "Prompt tokens prefilled and tokens generated per second.",
            "short",
            (
                Query(f"rate({sel(c.INFERENCE_PROMPT_TOKENS, HOST)}[{RATE}])", "prompt {{node}}"),
                Query(
                    f"rate({sel(c.INFERENCE_GENERATION_TOKENS, HOST)}[{RATE}])",
                    "generated {{node}}",
                ),
            ),
            min=0,
            width=8,
            needs=HARNESS,
        ),
        Panel(
            "Running and waiting requests",
            "Requests in the running batch and waiting for admission; a waiting queue that "
            "keeps growing means the engine cannot keep up.",
            "short",
            (
                Query(sel(c.INFERENCE_REQUESTS_RUNNING, HOST), "running {{node}}"),
                Query(sel(c.INFERENCE_REQUESTS_WAITING, HOST), "waiting {{node}}"),
            ),
            min=0,
            width=8,
            needs=HARNESS,
        ),
        Panel(
            "Queue time",
            "Time requests waited before prefill, p50/p99.",
            "s",
            (
                Query(
                    f"{quantile_record('instance', c.INFERENCE_QUEUE_DURATION, 'p50')}{{{HOST}}}",
                    "p50 {{node}}",
                ),
                Query(
                    f"{quantile_record('instance', c.INFERENCE_QUEUE_DURATION, 'p99')}{{{HOST}}}",
                    "p99 {{node}}",
                ),
            ),
            min=0,
            width=8,
            needs=HARNESS,
        ),
        Panel(
            "Outcomes",
            "Finished requests per second by outcome: ok, rejected (over the token budget), "
            "shed (KV cache nearly full), timeout, error, cancelled.",
            "reqps",
            (
                Query(
                    f"sum by (outcome) (rate({sel(c.INFERENCE_REQUESTS, HOST)}[{RATE}]))",
                    "{{outcome}}",
                ),
            ),
            stacked=True,
            min=0,
            width=12,
            needs=HARNESS,
        ),
        Panel(
            "Error ratio and budget",
            f"Shed, timed-out and failed requests over the requests that count (ok or failed), "
            f"per service over {t.inference_rate_window} (the recording rule the SLO alerts "
            f"read). Orange: the error budget ({budget:.2%} of requests); red: the fastest "
            f"burn rate that pages ({page:g}x the budget).",
            "percentunit",
            (
                Query(
                    f"{error_ratio('service', t.inference_rate_window)}{{{SERVICE}}}",
                    "{{job}}",
                ),
            ),
            thresholds=warning_critical(budget, page * budget),
            min=0,
            width=12,
            needs=HARNESS,
        ),
        Row("KV cache"),
        Panel(
            "KV cache utilization",
            "Used blocks over all blocks of the paged KV cache, against the KV-cache alert's "
            "levels; the harness sheds load above its shed threshold.",
            "percentunit",
            (Query(sel(c.INFERENCE_KV_CACHE_UTILIZATION, HOST), "{{node}}"),),
            thresholds=tiers(t.inference_kv_cache.tiers),
            min=0,
            max=1,
            width=8,
            needs=HARNESS,
        ),
        Panel(
            "KV cache fragmentation",
            "Share of the used blocks' token slots that hold no token (bounded by one block per "
            "sequence with paged attention).",
            "percentunit",
            (Query(sel(c.INFERENCE_KV_CACHE_FRAGMENTATION, HOST), "{{node}}"),),
            min=0,
            max=1,
            width=8,
            needs=HARNESS,
        ),
        Panel(
            "Preemptions",
            "Requests preempted per second because the KV cache ran out mid-decode (their "
            "blocks freed and the request recomputed).",
            "ops",
            (Query(f"rate({sel(c.INFERENCE_PREEMPTIONS, HOST)}[{RATE}])", "{{node}}"),),
            min=0,
            width=8,
            needs=HARNESS,
        ),
    )
    return DashboardSpec(
        UID,
        "LLM inference",
        "What users' tokens feel like: TTFT, TPOT and end-to-end latency, throughput, queue, "
        "outcomes, and the paged KV cache.",
        items,
        variables=("cluster", "node", "job"),
    )
