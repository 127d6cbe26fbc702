"""The inference harness's own figures as a source: latency histograms, token and outcome
counters, queue and KV cache gauges, readiness and model info (all process-level: no gpu label).

Torch-free: it reads a `HarnessMetrics` recorder, which the engine (or a user's own service
embedding it) fills from its engine thread.
"""

from __future__ import annotations

from exporter import catalog
from exporter.harness.metrics import HarnessMetrics
from exporter.samples import AnySample, HistogramSample


class HarnessSource:
    """Samples of the inference_* families from a harness's metrics recorder."""

    def __init__(self, metrics: HarnessMetrics, name: str = "harness") -> None:
        self.name = name
        self.metrics = metrics

    def collect(self) -> list[AnySample]:
        m = self.metrics.snapshot()
        c = catalog
        out: list[AnySample] = [
            _histogram(c.INFERENCE_TIME_TO_FIRST_TOKEN, m.ttft, m.ttft_sum),
            _histogram(c.INFERENCE_TIME_PER_OUTPUT_TOKEN, m.tpot, m.tpot_sum),
            _histogram(c.INFERENCE_REQUEST_DURATION, m.e2e, m.e2e_sum),
            _histogram(c.INFERENCE_QUEUE_DURATION, m.queue, m.queue_sum),
            c.INFERENCE_REQUESTS_RUNNING.sample(m.running),
            c.INFERENCE_REQUESTS_WAITING.sample(m.waiting),
        ]
        if m.kv is not None:  # absent until the KV cache is allocated
            out += [
                c.INFERENCE_KV_CACHE_UTILIZATION.sample(m.kv.utilization),
                c.INFERENCE_KV_CACHE_FRAGMENTATION.sample(m.kv.fragmentation),
                c.INFERENCE_KV_CACHE_BLOCKS.sample(m.kv.blocks_used, state="used"),
                c.INFERENCE_KV_CACHE_BLOCKS.sample(
                    m.kv.blocks_total - m.kv.blocks_used, state="free"
                ),
            ]
        out.append(c.INFERENCE_READY.sample(int(m.ready)))
        out.append(c.INFERENCE_ENGINE_FAILED.sample(int(m.failed)))
        out += [c.INFERENCE_REQUESTS.sample(n, outcome=o) for o, n in m.outcomes.items()]
        out += [
            c.INFERENCE_PROMPT_TOKENS.sample(m.prompt_tokens),
            c.INFERENCE_GENERATION_TOKENS.sample(m.generation_tokens),
            c.INFERENCE_PREEMPTIONS.sample(m.preemptions),
        ]
        if m.model is not None:
            out.append(
                c.INFERENCE_MODEL_INFO.sample(
                    1, model=m.model.model, dtype=m.model.dtype, device=m.model.device
                )
            )
        return out

    def close(self) -> None:
        """Nothing to release: the engine is stopped by whoever started it."""


def _histogram(
    family: catalog.MetricFamily, buckets: tuple[tuple[float, float], ...], total: float
) -> HistogramSample:
    return HistogramSample(family.name, (), buckets, total)
