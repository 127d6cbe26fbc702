"""Stand-ins for the /metrics of vLLM and SGLang: prometheus_client registries (the library both
engines expose their metrics with) holding the engines' real names, labels and bucket layouts,
typed here from vllm/v1/metrics/loggers.py (v0.10.2: the v1 names beside their deprecated
aliases, two data-parallel engines) and sglang/srt/metrics/collector.py (two tensor-parallel
ranks), independently of exporter/engines.py, so a typo in a declaration shows as a mismatch;
served on 127.0.0.1 and driven by a small traffic model a test can saturate or hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tests.conftest import free_port

VLLM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SGLANG_MODEL = "Qwen/Qwen2.5-7B-Instruct"

VLLM_TTFT = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
VLLM_ITL = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0]  # fmt: skip
VLLM_REQUEST = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]  # fmt: skip
SGLANG_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
SGLANG_ITL = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
              0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000,
              8.000]  # fmt: skip
SGLANG_E2E = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600,
              1200, 1800, 2400]  # fmt: skip
SGLANG_QUEUE = [0.0, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100,
                200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000,
                2500, 3000]  # fmt: skip


@dataclass
class Traffic:
    """What the engine does per second while it runs: requests finishing, tokens per request,
    its latencies; `kv` the KV-cache share in use; `hung`: nothing moves any more."""

    requests_per_s: float = 4.0
    prompt_tokens: int = 200
    output_tokens: int = 50
    ttft: float = 0.3
    itl: float = 0.03
    queue: float = 0.05
    running: int = 6
    waiting: int = 0  # a queue that never drains is an alert of its own
    kv: float = 0.4
    failed_share: float = 0.0
    hung: bool = False


class _Engine:
    registry: CollectorRegistry

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.traffic = Traffic()
        self.lock = threading.Lock()
        self._due = 0.0

    def exposition(self) -> bytes:
        with self.lock:
            return generate_latest(self.registry)

    def advance(self, dt: float) -> None:
        """Apply `dt` seconds of traffic."""
        with self.lock:
            t = self.traffic
            self._gauges(t)
            if t.hung:
                return
            self._due += t.requests_per_s * dt
            finished, self._due = int(self._due), self._due - int(self._due)
            self._step(t, dt, finished)

    def _gauges(self, t: Traffic) -> None:
        raise NotImplementedError

    def _step(self, t: Traffic, dt: float, finished: int) -> None:
        raise NotImplementedError


class VllmStandIn(_Engine):
    """vLLM v0.10.2's OpenAI server with two data-parallel engines (`engine` 0 and 1)."""

    ENGINES = ("0", "1")

    def __init__(self) -> None:
        super().__init__()
        r, labels = self.registry, ["model_name", "engine"]

        def gauge(name: str) -> Gauge:
            return Gauge(name, name, labels, registry=r, multiprocess_mode="mostrecent")

        def counter(name: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, name, [*labels, *extra], registry=r)

        def histogram(name: str, buckets: list[float]) -> Histogram:
            return Histogram(name, name, labels, registry=r, buckets=buckets)

        self.running = gauge("vllm:num_requests_running")
        self.waiting = gauge("vllm:num_requests_waiting")
        self.kv = gauge("vllm:kv_cache_usage_perc")
        self.kv_deprecated = gauge("vllm:gpu_cache_usage_perc")
        self.preemptions = counter("vllm:num_preemptions")
        self.prompt = counter("vllm:prompt_tokens")
        self.generation = counter("vllm:generation_tokens")
        self.success = counter("vllm:request_success", ("finished_reason",))
        self.ttft = histogram("vllm:time_to_first_token_seconds", VLLM_TTFT)
        self.itl = histogram("vllm:inter_token_latency_seconds", VLLM_ITL)
        self.tpot_deprecated = histogram("vllm:time_per_output_token_seconds", VLLM_ITL)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", VLLM_REQUEST)
        self.queue = histogram("vllm:request_queue_time_seconds", VLLM_REQUEST)
        # prometheus-fastapi-instrumentator, as vLLM's API server sets it up
        self.http = Counter(
            "http_requests", "Total number of requests by method, status and handler.",
            ["handler", "method", "status"], registry=r,
        )  # fmt: skip
        for engine in self.ENGINES:  # vLLM creates every labelled child at start-up
            for metric in (self.preemptions, self.prompt, self.generation):
                metric.labels(VLLM_MODEL, engine)
            for hist in (self.ttft, self.itl, self.tpot_deprecated, self.e2e, self.queue):
                hist.labels(VLLM_MODEL, engine)
        self.http.labels("/health", "GET", "2xx").inc(3)
        self._gauges(self.traffic)

    def _gauges(self, t: Traffic) -> None:
        for i, engine in enumerate(self.ENGINES):
            share = (t.running + i) // 2
            self.running.labels(VLLM_MODEL, engine).set(share)
            self.waiting.labels(VLLM_MODEL, engine).set(t.waiting if i == 0 else 0)
            kv = t.kv if i == 0 else t.kv * 0.8  # engine 0 is the fuller one
            self.kv.labels(VLLM_MODEL, engine).set(kv)
            self.kv_deprecated.labels(VLLM_MODEL, engine).set(kv)

    def _step(self, t: Traffic, dt: float, finished: int) -> None:
        for i, engine in enumerate(self.ENGINES):
            mine = finished // 2 + (finished % 2 if i == 0 else 0)
            tokens = t.running * dt / max(t.itl, 1e-3) / 2
            self.generation.labels(VLLM_MODEL, engine).inc(tokens)
            for _ in range(max(1, int(tokens // 10))):
                self.itl.labels(VLLM_MODEL, engine).observe(t.itl)
                self.tpot_deprecated.labels(VLLM_MODEL, engine).observe(t.itl)
            for _ in range(mine):
                self.prompt.labels(VLLM_MODEL, engine).inc(t.prompt_tokens)
                self.ttft.labels(VLLM_MODEL, engine).observe(t.ttft)
                self.queue.labels(VLLM_MODEL, engine).observe(t.queue)
                self.e2e.labels(VLLM_MODEL, engine).observe(t.ttft + t.itl * t.output_tokens)
                self.success.labels(VLLM_MODEL, engine, "stop").inc()
        failed = round(finished * t.failed_share)
        self.http.labels("/v1/chat/completions", "POST", "2xx").inc(finished - failed)
        if failed:
            self.http.labels("/v1/chat/completions", "POST", "5xx").inc(failed)
        self.http.labels("/v1/chat/completions", "POST", "4xx").inc(finished // 4)
        self.http.labels("/v1/models", "GET", "2xx").inc(finished)


class SglangStandIn(_Engine):
    """SGLang with `--enable-metrics` and tensor parallelism 2: the scheduler of every rank
    reports the same batch (`tp_rank` 0 and 1), the tokenizer manager once."""

    RANKS = ("0", "1")

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        scheduler, tokenizer = ["model_name", "tp_rank", "pp_rank"], ["model_name"]

        def gauge(name: str) -> Gauge:
            return Gauge(name, name, scheduler, registry=r, multiprocess_mode="mostrecent")

        self.running = gauge("sglang:num_running_reqs")
        self.queue_reqs = gauge("sglang:num_queue_reqs")
        self.token_usage = gauge("sglang:token_usage")
        self.retracted = Counter("sglang:num_retracted_requests", "x", scheduler, registry=r)
        self.queue_time = Histogram(
            "sglang:queue_time_seconds", "x", scheduler, registry=r, buckets=SGLANG_QUEUE
        )
        self.prompt = Counter("sglang:prompt_tokens", "x", tokenizer, registry=r)
        self.generation = Counter("sglang:generation_tokens", "x", tokenizer, registry=r)
        self.requests = Counter("sglang:num_requests", "x", tokenizer, registry=r)
        self.aborted = Counter("sglang:num_aborted_requests", "x", tokenizer, registry=r)

        def histogram(name: str, buckets: list[float]) -> Histogram:
            return Histogram(name, name, tokenizer, registry=r, buckets=buckets)

        self.ttft = histogram("sglang:time_to_first_token_seconds", SGLANG_TTFT)
        self.itl = histogram("sglang:inter_token_latency_seconds", SGLANG_ITL)
        self.e2e = histogram("sglang:e2e_request_latency_seconds", SGLANG_E2E)
        for rank in self.RANKS:
            self.retracted.labels(SGLANG_MODEL, rank, "0")
            self.queue_time.labels(SGLANG_MODEL, rank, "0")
        for metric in (self.prompt, self.generation, self.requests, self.aborted):
            metric.labels(SGLANG_MODEL)
        for hist in (self.ttft, self.itl, self.e2e):
            hist.labels(SGLANG_MODEL)
        self._gauges(self.traffic)

    def _gauges(self, t: Traffic) -> None:
        for rank in self.RANKS:
            self.running.labels(SGLANG_MODEL, rank, "0").set(t.running)
            self.queue_reqs.labels(SGLANG_MODEL, rank, "0").set(t.waiting)
            self.token_usage.labels(SGLANG_MODEL, rank, "0").set(t.kv)

    def _step(self, t: Traffic, dt: float, finished: int) -> None:
        for _ in range(max(1, int(t.running * dt / max(t.itl, 1e-3) // 10))):
            self.itl.labels(SGLANG_MODEL).observe(t.itl)
        for _ in range(finished):
            self.prompt.labels(SGLANG_MODEL).inc(t.prompt_tokens)
            self.generation.labels(SGLANG_MODEL).inc(t.output_tokens)  # at the request's end
            self.requests.labels(SGLANG_MODEL).inc()
            self.ttft.labels(SGLANG_MODEL).observe(t.ttft)
            self.e2e.labels(SGLANG_MODEL).observe(t.ttft + t.itl * t.output_tokens)
            for rank in self.RANKS:
                self.queue_time.labels(SGLANG_MODEL, rank, "0").observe(t.queue)


@dataclass
class Served:
    """A stand-in served on 127.0.0.1."""

    engine: _Engine
    url: str
    stop: threading.Event = field(default_factory=threading.Event)


@contextmanager
def serve(engine: _Engine, tick: float = 0.2) -> Iterator[Served]:
    """Serve `engine`'s /metrics on a free port, advancing its traffic every `tick` seconds."""
    port = free_port()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = engine.exposition()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    served = Served(engine, f"http://127.0.0.1:{port}")

    def drive() -> None:
        last = time.monotonic()
        while not served.stop.wait(tick):
            now = time.monotonic()
            engine.advance(now - last)
            last = now

    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=drive, daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield served
    finally:
        served.stop.set()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(timeout=5)
