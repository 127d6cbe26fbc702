"""Small in-process sources for sampler and server tests."""

from __future__ import annotations

import threading

from exporter import catalog
from exporter.samples import Sample
from exporter.sources import SourceUnavailable


def temperature(gpu: str, value: float) -> Sample:
    return catalog.GPU_TEMPERATURE.sample(value, gpu=gpu, uuid=f"GPU-{gpu}", sensor="gpu")


class CountingSource:
    """Answers with one temperature sample whose value is the call count."""

    def __init__(self, name: str = "good", gpu: str = "0") -> None:
        self.name = name
        self.gpu = gpu
        self.calls = 0
        self.closed = False

    def collect(self) -> list[Sample]:
        self.calls += 1
        return [temperature(self.gpu, float(self.calls))]

    def close(self) -> None:
        self.closed = True


class HangingSource(CountingSource):
    """Answers `answers` times, then blocks until `release` is set (a wedged driver call)."""

    def __init__(self, name: str = "hung", gpu: str = "1", answers: int = 0) -> None:
        super().__init__(name, gpu)
        self.answers = answers
        self.release = threading.Event()
        self.hung = threading.Event()

    def collect(self) -> list[Sample]:
        if self.calls >= self.answers:
            self.calls += 1
            self.hung.set()
            self.release.wait()
            return []
        return super().collect()


class RaisingSource(CountingSource):
    def __init__(self, name: str = "broken", exc: Exception | None = None) -> None:
        super().__init__(name, "2")
        self.exc = exc or RuntimeError("driver said no")

    def collect(self) -> list[Sample]:
        self.calls += 1
        raise self.exc


class ListSource(CountingSource):
    """Returns whatever samples it is given (to feed the sampler invalid ones)."""

    def __init__(self, name: str, samples: list) -> None:
        super().__init__(name)
        self.samples = samples

    def collect(self) -> list:
        self.calls += 1
        return self.samples


UNAVAILABLE = SourceUnavailable("libnvidia-ml.so.1 not found: is the NVIDIA driver installed?")
