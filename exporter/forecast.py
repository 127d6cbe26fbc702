"""When scrapers will ask: render a variant ahead only for the snapshot a scraper is due to read.

Prometheus scrapes a target on a steady period (15 s or 30 s, typically) while the sampler
publishes a snapshot every collection interval (1 s): rendering every snapshot would throw
away all but one render in fifteen. The forecast remembers, per scraper (the variant it asks
for and its address), when it last asked and the gap before that, and says which variants are
due while the next snapshot is current. A scraper it cannot predict (its first request, a
pattern that changed) still gets the latest snapshot: rendered on its request instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from exporter.render import Variant

#: A scraper silent for this long is forgotten.
FORGET_AFTER_SECONDS = 600.0
#: At most this many scrapers are remembered (the least recent is forgotten first).
MAX_SCRAPERS = 64
#: Share of the snapshot lifetime added on both sides of a predicted request (clock jitter).
SLACK = 0.1


@dataclass(slots=True)
class _Scraper:
    last: float  # when it last asked
    gap: float | None = None  # time between its last two requests


class ScrapeForecast:
    """Which variants scrapers are due to ask for, from when each asked before."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._scrapers: dict[tuple[Variant, str], _Scraper] = {}

    def note(self, variant: Variant, peer: str) -> None:
        """A scraper at `peer` asked for `variant` now."""
        now = self._clock()
        key = (variant, peer)
        scraper = self._scrapers.get(key)
        if scraper is None:
            if len(self._scrapers) >= MAX_SCRAPERS:
                oldest = min(self._scrapers, key=lambda k: self._scrapers[k].last)
                del self._scrapers[oldest]
            self._scrapers[key] = _Scraper(now)
            return
        scraper.gap = now - scraper.last
        scraper.last = now

    def due(self, lifetime: float) -> set[Variant]:
        """The variants some scraper should ask for within `lifetime` seconds from now."""
        now = self._clock()
        slack = SLACK * lifetime
        due: set[Variant] = set()
        for key, scraper in list(self._scrapers.items()):
            if now - scraper.last > FORGET_AFTER_SECONDS:
                del self._scrapers[key]
                continue
            gap = scraper.gap
            if gap is None or key[0] in due:
                continue
            gap = max(gap, 1e-6)
            if now - scraper.last > 2 * gap + lifetime:  # it missed two requests: stopped
                continue
            # the first request of its period at or after now - slack
            steps = max(1, math.ceil((now - slack - scraper.last) / gap))
            if scraper.last + steps * gap < now + lifetime + slack:
                due.add(key[0])
        return due

    def wanted(self) -> set[Variant]:
        """Every variant a remembered scraper asks for."""
        return {variant for variant, _ in self._scrapers}
