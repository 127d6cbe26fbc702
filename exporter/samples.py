"""Plain samples: what a source hands the sampler, with no knowledge of exposition or HTTP."""

from __future__ import annotations

from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one series: the family's exposed name, its labels in catalog order, a value."""

    name: str
    labels: Labels
    value: float

    def label(self, key: str) -> str | None:
        """The value of label `key`, or None when the series does not carry it."""
        for k, v in self.labels:
            if k == key:
                return v
        return None

    def with_value(self, value: float) -> Sample:
        """The same series at `value`: this very sample when the value has not changed (a sample
        is immutable, so a source hands an unchanged one out again instead of building it)."""
        return self if self.value == value else Sample(self.name, self.labels, value)


@dataclass(frozen=True, slots=True)
class HistogramSample:
    """One histogram series: cumulative counts per upper bound (ending with +Inf), sum and count."""

    name: str
    labels: Labels
    buckets: tuple[tuple[float, float], ...]
    sum: float

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def label(self, key: str) -> str | None:
        for k, v in self.labels:
            if k == key:
                return v
        return None


AnySample = Sample | HistogramSample
