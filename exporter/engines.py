"""The inference engines whose figures the inference layer normalises: the canary (this project's
harness), vLLM and SGLang, each declared once.

A declaration lists every metric of the engine that the layer reads, as the engine exposes it
(name, type, labels, a histogram's bucket bounds), and which figure of the layer each provides;
a figure an engine has no equivalent for is listed with the reason. The recording rules of the
layer (alerts/definitions/layer.py) are built from these declarations, the PromQL check of
`generate` (exporter/promql.py) knows these names beside the catalog's, and the README's engine
table is generated from them. Names move between engine releases: each declaration says which
releases it was taken from, and lists the deprecated aliases still in the field (the layer reads
the current name, else the alias, never both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from exporter import catalog
from exporter.catalog import Kind, MetricFamily


class Figure(StrEnum):
    """One figure of the inference layer: what an engine's metric means, not what it is called."""

    RUNNING = "requests_running"
    WAITING = "requests_waiting"
    KV_CACHE = "kv_cache_utilization"
    KV_FRAGMENTATION = "kv_cache_fragmentation"
    READY = "ready"
    PREEMPTIONS = "preemptions"
    PROMPT_TOKENS = "prompt_tokens"
    GENERATION_TOKENS = "generation_tokens"
    TIME_TO_FIRST_TOKEN = "time_to_first_token_seconds"
    INTER_TOKEN_LATENCY = "inter_token_latency_seconds"
    REQUEST_DURATION = "request_duration_seconds"
    QUEUE_DURATION = "queue_duration_seconds"
    REQUESTS = "requests"
    REQUEST_ERRORS = "request_errors"


#: How each figure is read: a gauge (summed over an engine's servers, or the worst of them), a
#: counter (as a rate), a histogram (bucket rates summed by `le`).
FIGURE_KIND: dict[Figure, Kind] = {
    Figure.RUNNING: Kind.GAUGE,
    Figure.WAITING: Kind.GAUGE,
    Figure.KV_CACHE: Kind.GAUGE,
    Figure.KV_FRAGMENTATION: Kind.GAUGE,
    Figure.READY: Kind.GAUGE,
    Figure.PREEMPTIONS: Kind.COUNTER,
    Figure.PROMPT_TOKENS: Kind.COUNTER,
    Figure.GENERATION_TOKENS: Kind.COUNTER,
    Figure.TIME_TO_FIRST_TOKEN: Kind.HISTOGRAM,
    Figure.INTER_TOKEN_LATENCY: Kind.HISTOGRAM,
    Figure.REQUEST_DURATION: Kind.HISTOGRAM,
    Figure.QUEUE_DURATION: Kind.HISTOGRAM,
    Figure.REQUESTS: Kind.COUNTER,
    Figure.REQUEST_ERRORS: Kind.COUNTER,
}


@dataclass(frozen=True, slots=True)
class EngineMetric:
    """One metric as an engine exposes it (a counter's name with `_total`, a histogram's base
    name: the check knows its `_bucket`, `_sum` and `_count` series)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @classmethod
    def of(cls, family: MetricFamily) -> EngineMetric:
        """A catalog family (the canary's) as an engine metric."""
        return cls(family.name, family.kind, family.help, family.labels, family.buckets)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Provision:
    """How one engine provides one figure.

    `metrics`: the current name first, then deprecated aliases of the same figure (same type,
    labels and buckets), read only where the current name is absent. `matchers`: label matchers
    on every one of them; `{error_outcomes}` stands for the thresholds' error outcomes (the
    canary's `inference_requests_total{outcome}`). `ranks`: labels of an engine's ranks that
    each report the same requests (tensor/pipeline parallel ranks): the worst of them counts
    once. `note`: what differs from the canary's figure, for the README table.
    """

    metrics: tuple[EngineMetric, ...]
    matchers: str = ""
    ranks: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class ModelJoin:
    """Where the `model` label comes from when a metric does not carry the engine's model label:
    `label` of `metric`, joined on the scrape target (job, instance). `optional`: a target
    without `metric` keeps its series, without a model label (the canary's model info appears
    once its model is loaded, and a model that fails to load is what an alert must say);
    otherwise its series are dropped (a generic name, like the HTTP counter, is the engine's
    only on a target that also exposes `metric`)."""

    metric: EngineMetric
    label: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Engine:
    """One engine: its `engine` label value, the releases its names were taken from, the label
    naming the served model, and what it provides (and what it lacks, with why)."""

    name: str
    title: str
    releases: str
    model_label: str  # "" when no series carries it: then `model_join` gives it
    model_join: ModelJoin | None
    provides: dict[Figure, Provision]
    lacks: dict[Figure, str] = field(default_factory=dict)
    prefixes: tuple[str, ...] = ()  # what its metric names start with
    shared_names: tuple[str, ...] = ()  # names outside the prefixes (a library's own)

    @property
    def metrics(self) -> list[EngineMetric]:
        """Every metric it declares, once, in declaration order."""
        out: dict[str, EngineMetric] = {}
        for p in self.provides.values():
            for m in p.metrics:
                out.setdefault(m.name, m)
        if self.model_join:
            out.setdefault(self.model_join.metric.name, self.model_join.metric)
        return list(out.values())


# --- the canary: this project's harness (exporter/catalog.py) -----------------------------------

_c = EngineMetric.of

CANARY = Engine(
    name="canary",
    title="Canary (this project's harness)",
    releases="this release",
    model_label="",
    model_join=ModelJoin(_c(catalog.INFERENCE_MODEL_INFO), "model", optional=True),
    provides={
        Figure.RUNNING: Provision((_c(catalog.INFERENCE_REQUESTS_RUNNING),)),
        Figure.WAITING: Provision((_c(catalog.INFERENCE_REQUESTS_WAITING),)),
        Figure.KV_CACHE: Provision((_c(catalog.INFERENCE_KV_CACHE_UTILIZATION),)),
        Figure.KV_FRAGMENTATION: Provision((_c(catalog.INFERENCE_KV_CACHE_FRAGMENTATION),)),
        Figure.READY: Provision((_c(catalog.INFERENCE_READY),)),
        Figure.PREEMPTIONS: Provision((_c(catalog.INFERENCE_PREEMPTIONS),)),
        Figure.PROMPT_TOKENS: Provision((_c(catalog.INFERENCE_PROMPT_TOKENS),)),
        Figure.GENERATION_TOKENS: Provision((_c(catalog.INFERENCE_GENERATION_TOKENS),)),
        Figure.TIME_TO_FIRST_TOKEN: Provision((_c(catalog.INFERENCE_TIME_TO_FIRST_TOKEN),)),
        Figure.INTER_TOKEN_LATENCY: Provision((_c(catalog.INFERENCE_TIME_PER_OUTPUT_TOKEN),)),
        Figure.REQUEST_DURATION: Provision((_c(catalog.INFERENCE_REQUEST_DURATION),)),
        Figure.QUEUE_DURATION: Provision((_c(catalog.INFERENCE_QUEUE_DURATION),)),
        Figure.REQUESTS: Provision(
            (_c(catalog.INFERENCE_REQUESTS),),
            'outcome=~"ok|{error_outcomes}"',
            note="ok and failed outcomes (not rejected, not cancelled)",
        ),
        Figure.REQUEST_ERRORS: Provision(
            (_c(catalog.INFERENCE_REQUESTS),),
            'outcome=~"{error_outcomes}"',
            note="the thresholds' error outcomes (shed, timeout, error)",
        ),
    },
    prefixes=("inference_",),
)

# --- vLLM: the v1 engine's PrometheusStatLogger and the OpenAI server's HTTP counter -----------

_VLLM_LABELS = ("model_name", "engine")  # `engine`: the data-parallel engine index
#: vllm/v1/metrics/loggers.py
_VLLM_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_VLLM_ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
_VLLM_REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def _vllm(name: str, kind: Kind, help: str, buckets: tuple[float, ...] = ()) -> EngineMetric:
    return EngineMetric(name, kind, help, _VLLM_LABELS, buckets)


VLLM_RUNNING = _vllm("vllm:num_requests_running", Kind.GAUGE, "Requests in model execution")
VLLM_HTTP_REQUESTS = EngineMetric(
    "http_requests_total",
    Kind.COUNTER,
    "HTTP requests of the OpenAI-compatible server (prometheus-fastapi-instrumentator; status "
    "grouped as 2xx, 4xx, 5xx)",
    ("handler", "method", "status"),
)
#: The handlers whose answers are inference requests (not /health, /v1/models, /metrics).
VLLM_INFERENCE_HANDLERS = "/v1/chat/completions|/v1/completions"

VLLM = Engine(
    name="vllm",
    title="vLLM",
    releases="v0.9 to v0.11 (v1 engine; the deprecated aliases cover the releases before)",
    model_label="model_name",
    model_join=ModelJoin(VLLM_RUNNING, "model_name"),
    provides={
        Figure.RUNNING: Provision((VLLM_RUNNING,)),
        Figure.WAITING: Provision(
            (_vllm("vllm:num_requests_waiting", Kind.GAUGE, "Requests waiting to be processed"),)
        ),
        Figure.KV_CACHE: Provision(
            (
                _vllm("vllm:kv_cache_usage_perc", Kind.GAUGE, "KV-cache usage, 1 means 100%"),
                _vllm("vllm:gpu_cache_usage_perc", Kind.GAUGE, "Deprecated alias (v0.9)"),
            )
        ),
        Figure.PREEMPTIONS: Provision(
            (_vllm("vllm:num_preemptions_total", Kind.COUNTER, "Preemptions of the engine"),)
        ),
        Figure.PROMPT_TOKENS: Provision(
            (_vllm("vllm:prompt_tokens_total", Kind.COUNTER, "Prefill tokens processed"),)
        ),
        Figure.GENERATION_TOKENS: Provision(
            (_vllm("vllm:generation_tokens_total", Kind.COUNTER, "Generation tokens processed"),)
        ),
        Figure.TIME_TO_FIRST_TOKEN: Provision(
            (
                _vllm(
                    "vllm:time_to_first_token_seconds",
                    Kind.HISTOGRAM,
                    "Time to first token",
                    _VLLM_TTFT_BUCKETS,
                ),
            )
        ),
        Figure.INTER_TOKEN_LATENCY: Provision(
            (
                _vllm(
                    "vllm:inter_token_latency_seconds",
                    Kind.HISTOGRAM,
                    "Inter-token latency",
                    _VLLM_ITL_BUCKETS,
                ),
                _vllm(
                    "vllm:time_per_output_token_seconds",
                    Kind.HISTOGRAM,
                    "Deprecated alias (v0.11) of the inter-token latency",
                    _VLLM_ITL_BUCKETS,
                ),
            )
        ),
        Figure.REQUEST_DURATION: Provision(
            (
                _vllm(
                    "vllm:e2e_request_latency_seconds",
                    Kind.HISTOGRAM,
                    "End-to-end request latency",
                    _VLLM_REQUEST_BUCKETS,
                ),
            )
        ),
        Figure.QUEUE_DURATION: Provision(
            (
                _vllm(
                    "vllm:request_queue_time_seconds",
                    Kind.HISTOGRAM,
                    "Time in the WAITING phase",
                    _VLLM_REQUEST_BUCKETS,
                ),
            )
        ),
        Figure.REQUESTS: Provision(
            (VLLM_HTTP_REQUESTS,),
            f'handler=~"{VLLM_INFERENCE_HANDLERS}", status=~"2xx|5xx"',
            note="HTTP answers 2xx and 5xx of the completion handlers (not 4xx)",
        ),
        Figure.REQUEST_ERRORS: Provision(
            (VLLM_HTTP_REQUESTS,),
            f'handler=~"{VLLM_INFERENCE_HANDLERS}", status="5xx"',
            note="HTTP 5xx answers of the completion handlers; a stream that fails after its "
            "200 header counts as a success",
        ),
    },
    lacks={
        Figure.KV_FRAGMENTATION: "no equivalent (vLLM's paged blocks waste at most one block "
        "per sequence and it exports no figure of it)",
        Figure.READY: "no metric: vLLM serves /metrics only once the engine is up; a server "
        "that is not ready is a target down (`up == 0`)",
    },
    prefixes=("vllm:",),
    shared_names=(VLLM_HTTP_REQUESTS.name,),
)

# --- SGLang: SchedulerMetricsCollector and TokenizerMetricsCollector (--enable-metrics) --------

_SGLANG_RANKS = ("tp_rank", "pp_rank")
_SCHEDULER = ("model_name", *_SGLANG_RANKS)
_TOKENIZER = ("model_name",)
#: python/sglang/srt/metrics/collector.py (defaults; --bucket-* flags change them)
_SGLANG_TTFT_BUCKETS = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0,
    400.0,
)  # fmt: skip
_SGLANG_ITL_BUCKETS = (
    0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2,
    0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0,
)  # fmt: skip
_SGLANG_E2E_BUCKETS = (
    0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0,
    400.0, 600.0, 1200.0, 1800.0, 2400.0,
)  # fmt: skip
_SGLANG_QUEUE_BUCKETS = (
    0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0,
    80.0, 90.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0, 1200.0,
    1400.0, 1600.0, 1800.0, 2000.0, 2500.0, 3000.0,
)  # fmt: skip


def _sglang(
    name: str, kind: Kind, help: str, labels: tuple[str, ...], buckets: tuple[float, ...] = ()
) -> EngineMetric:
    return EngineMetric(name, kind, help, labels, buckets)


SGLANG = Engine(
    name="sglang",
    title="SGLang",
    releases="v0.4.6 to v0.5 (--enable-metrics, default buckets)",
    model_label="model_name",
    model_join=None,
    provides={
        Figure.RUNNING: Provision(
            (_sglang("sglang:num_running_reqs", Kind.GAUGE, "Running requests", _SCHEDULER),),
            ranks=_SGLANG_RANKS,
        ),
        Figure.WAITING: Provision(
            (_sglang("sglang:num_queue_reqs", Kind.GAUGE, "Requests queued", _SCHEDULER),),
            ranks=_SGLANG_RANKS,
        ),
        Figure.KV_CACHE: Provision(
            (_sglang("sglang:token_usage", Kind.GAUGE, "KV pool token usage, 0-1", _SCHEDULER),),
            ranks=_SGLANG_RANKS,
            note="token slots of the KV pool in use (the radix cache's reusable prefixes count)",
        ),
        Figure.PREEMPTIONS: Provision(
            (
                _sglang(
                    "sglang:num_retracted_requests_total",
                    Kind.COUNTER,
                    "Requests retracted (preempted) when the KV pool ran out",
                    _SCHEDULER,
                ),
            ),
            ranks=_SGLANG_RANKS,
            note="retracted requests",
        ),
        Figure.PROMPT_TOKENS: Provision(
            (_sglang("sglang:prompt_tokens_total", Kind.COUNTER, "Prefill tokens", _TOKENIZER),),
            note="counted when a request finishes",
        ),
        Figure.GENERATION_TOKENS: Provision(
            (
                _sglang(
                    "sglang:generation_tokens_total",
                    Kind.COUNTER,
                    "Generation tokens",
                    _TOKENIZER,
                ),
            ),
            note="counted when a request finishes: the stuck-engine alert also looks at the "
            "KV pool moving",
        ),
        Figure.TIME_TO_FIRST_TOKEN: Provision(
            (
                _sglang(
                    "sglang:time_to_first_token_seconds",
                    Kind.HISTOGRAM,
                    "Time to first token",
                    _TOKENIZER,
                    _SGLANG_TTFT_BUCKETS,
                ),
            )
        ),
        Figure.INTER_TOKEN_LATENCY: Provision(
            (
                _sglang(
                    "sglang:inter_token_latency_seconds",
                    Kind.HISTOGRAM,
                    "Inter-token latency",
                    _TOKENIZER,
                    _SGLANG_ITL_BUCKETS,
                ),
            )
        ),
        Figure.REQUEST_DURATION: Provision(
            (
                _sglang(
                    "sglang:e2e_request_latency_seconds",
                    Kind.HISTOGRAM,
                    "End-to-end request latency",
                    _TOKENIZER,
                    _SGLANG_E2E_BUCKETS,
                ),
            )
        ),
        Figure.QUEUE_DURATION: Provision(
            (
                _sglang(
                    "sglang:queue_time_seconds",
                    Kind.HISTOGRAM,
                    "Queueing time",
                    _SCHEDULER,
                    _SGLANG_QUEUE_BUCKETS,
                ),
            ),
            ranks=_SGLANG_RANKS,
        ),
        Figure.REQUESTS: Provision(
            (_sglang("sglang:num_requests_total", Kind.COUNTER, "Requests finished", _TOKENIZER),),
            note="finished requests",
        ),
    },
    lacks={
        Figure.KV_FRAGMENTATION: "no equivalent",
        Figure.READY: "no metric: a server that is not ready is a target down (`up == 0`)",
        Figure.REQUEST_ERRORS: "no equivalent: sglang:num_aborted_requests_total mixes "
        "clients that went away with failures, so SGLang has no error ratio and no error "
        "budget alert",
    },
    prefixes=("sglang:",),
)

#: Every engine, in the order of the README table.
ENGINES: tuple[Engine, ...] = (CANARY, VLLM, SGLANG)


def engine(name: str) -> Engine:
    for e in ENGINES:
        if e.name == name:
            return e
    raise KeyError(f"no engine {name!r}: one of {', '.join(e.name for e in ENGINES)}")


def engine_metrics() -> dict[str, EngineMetric]:
    """Every declared metric of vLLM and SGLang by name (the canary's are catalog families)."""
    out: dict[str, EngineMetric] = {}
    for e in ENGINES:
        if e is CANARY:
            continue
        for m in e.metrics:
            out.setdefault(m.name, m)
    return out


_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def engine_problems(e: Engine) -> list[str]:
    """What is wrong with a declaration (empty when nothing)."""
    problems: list[str] = []
    overlap = set(e.provides) & set(e.lacks)
    if overlap:
        problems.append(f"{e.name}: both provides and lacks {sorted(overlap)}")
    for figure in Figure:
        if figure not in e.provides and figure not in e.lacks:
            problems.append(f"{e.name}: {figure} is neither provided nor said to be lacking")
    for m in e.metrics:
        where = f"{e.name}: {m.name}"
        if not _NAME.match(m.name):
            problems.append(f"{where}: not a Prometheus metric name")
        if not m.name.startswith(e.prefixes) and m.name not in e.shared_names:
            problems.append(f"{where}: does not start with {' or '.join(e.prefixes)}")
        if (m.kind is Kind.COUNTER) != m.name.endswith("_total"):
            problems.append(f"{where}: a counter's name, and only a counter's, ends in _total")
        if m.kind is Kind.HISTOGRAM and list(m.buckets) != sorted(set(m.buckets)):
            problems.append(f"{where}: a histogram needs strictly increasing buckets")
        if m.kind is not Kind.HISTOGRAM and m.buckets:
            problems.append(f"{where}: only histograms have buckets")
    for figure, p in e.provides.items():
        where = f"{e.name}: {figure}"
        first = p.metrics[0]
        if first.kind is not FIGURE_KIND[figure]:
            problems.append(f"{where}: a {FIGURE_KIND[figure]} figure from a {first.kind}")
        for alias in p.metrics[1:]:
            if (alias.kind, alias.labels, alias.buckets) != (
                first.kind,
                first.labels,
                first.buckets,
            ):
                problems.append(
                    f"{where}: alias {alias.name} differs from {first.name} in type, labels or "
                    "buckets (the layer reads one or the other as the same series)"
                )
        for m in p.metrics:
            missing = [r for r in p.ranks if r not in m.labels]
            if missing:
                problems.append(f"{where}: {m.name} has no rank label {missing}")
            if e.model_label and e.model_label not in m.labels and e.model_join is None:
                problems.append(f"{where}: {m.name} has no {e.model_label} and no model join")
    return problems


def declaration_problems() -> list[str]:
    problems = [p for e in ENGINES for p in engine_problems(e)]
    names = [e.name for e in ENGINES]
    if len(names) != len(set(names)):
        problems.append("two engines with one name")
    return problems


_problems = declaration_problems()
if _problems:
    raise ValueError("engine declarations: " + "; ".join(_problems))
