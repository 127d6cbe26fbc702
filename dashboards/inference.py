"""LLM inference: latency quantiles, throughput, queue, outcomes, KV cache and preemptions."""

from __future__ import annotations

from alerts.thresholds import Thresholds, Tiers
from dashboards.panels import DashboardSpec, Panel, Query, Row, tiers
from dashboards.queries import HOST, RATE, quantile, sel, sel_re
from exporter import catalog as c

UID = "llm-inference"
QUANTILES = (0.5, 0.9, 0.99)
HARNESS = "harness"


def _latency(title: str, description: str, histogram, levels: Tiers) -> Panel:
    return Panel(
        title,
        description,
        "s",
        tuple(
            Query(quantile(q, histogram, by="instance"), f"p{round(q * 100)} {{{{instance}}}}")
            for q in QUANTILES
        ),
        thresholds=tiers(levels),
        min=0,
        width=8,
        needs=HARNESS,
    )


def dashboard(t: Thresholds) -> DashboardSpec:
    failed = sel_re(c.INFERENCE_REQUESTS, HOST, outcome="|".join(t.inference_error_outcomes))
    every = sel(c.INFERENCE_REQUESTS, HOST)
    items: tuple[Panel | Row, ...] = (
        Row("Latency"),
        _latency(
            "Time to first token",
            "TTFT p50/p90/p99: arrival to first generated token (queue + prefill). Lines: the "
            "p99 TTFT alert's levels.",
            c.INFERENCE_TIME_TO_FIRST_TOKEN,
            t.inference_ttft_p99,
        ),
        _latency(
            "Time per output token",
            "TPOT p50/p90/p99: the gap between consecutive tokens of a request. Lines: the p99 "
            "TPOT alert's levels.",
            c.INFERENCE_TIME_PER_OUTPUT_TOKEN,
            t.inference_tpot_p99,
        ),
        _latency(
            "End-to-end latency",
            "Request duration p50/p90/p99, arrival to last token. Lines: the p99 latency "
            "alert's levels.",
            c.INFERENCE_REQUEST_DURATION,
            t.inference_request_p99,
        ),
        Row("Load"),
        Panel(
            "Token throughput",
            "Prompt tokens prefilled and tokens generated per second.",
            "short",
            (
                Query(
                    f"rate({sel(c.INFERENCE_PROMPT_TOKENS, HOST)}[{RATE}])", "prompt {{instance}}"
                ),
                Query(
                    f"rate({sel(c.INFERENCE_GENERATION_TOKENS, HOST)}[{RATE}])",
                    "generated {{instance}}",
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
                Query(sel(c.INFERENCE_REQUESTS_RUNNING, HOST), "running {{instance}}"),
                Query(sel(c.INFERENCE_REQUESTS_WAITING, HOST), "waiting {{instance}}"),
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
                Query(quantile(0.5, c.INFERENCE_QUEUE_DURATION, by="instance"), "p50 {{instance}}"),
                Query(
                    quantile(0.99, c.INFERENCE_QUEUE_DURATION, by="instance"), "p99 {{instance}}"
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
            "Error ratio",
            "Shed, timed-out and failed requests over all finished requests, against the "
            "error-ratio alert's levels.",
            "percentunit",
            (
                Query(
                    f"sum(rate({failed}[{RATE}])) / sum(rate({every}[{RATE}]))",
                    "error ratio",
                ),
            ),
            thresholds=tiers(t.inference_error_ratio),
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
            (Query(sel(c.INFERENCE_KV_CACHE_UTILIZATION, HOST), "{{instance}}"),),
            thresholds=tiers(t.inference_kv_cache),
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
            (Query(sel(c.INFERENCE_KV_CACHE_FRAGMENTATION, HOST), "{{instance}}"),),
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
            (Query(f"rate({sel(c.INFERENCE_PREEMPTIONS, HOST)}[{RATE}])", "{{instance}}"),),
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
        variables=("job", "instance"),
    )
