#!/usr/bin/env python3
"""Rendering cost: samples → exposition bytes, next to a hand-loop floor and prometheus_client.

For each fleet size, every figure is the best of --repeat of one cycle's work, on the samples of
a fresh collection each time (as the sampler gets them):

  floor            a hand loop: group by family, HELP/TYPE lines, one f-string per sample
                   (labels joined as they come, value with repr): no escaping, no label sorting,
                   no Go float formatting, nothing kept between cycles. Nothing to beat.
  exporter         what a cycle costs the exporter to produce a body: the series keys, the kept
                   layout, the flat values and the render (exporter.render)
  ..., one series changed  a series set that changed (a process came): a new layout built
                   from the kept strings of the series that remain
  ..., all series new  the same when every series is new (the first cycle)
  prometheus_client  the former path: metric families through prometheus_client's writers
  gzip level N     compressing the OpenMetrics body (the exporter uses level 1)

Usage: .venv/bin/python bench/render.py [--gpus 8,64] [--repeat 30]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import table


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def floor(samples) -> bytes:
    """The hand loop a renderer is measured against."""
    from exporter.catalog import FAMILIES

    by_family: dict[str, list] = {}
    for s in samples:
        by_family.setdefault(s.name, []).append(s)
    out = []
    for name, fam in FAMILIES.items():
        family = by_family.get(name)
        if not family:
            continue
        out.append(f"# HELP {name} {fam.help}\n# TYPE {name} {fam.kind}\n")
        for s in family:
            labels = ",".join(f'{k}="{v}"' for k, v in s.labels)
            out.append(f"{name}{{{labels}}} {s.value}\n")
    return "".join(out).encode()


def measure(gpus: int, repeat: int) -> list[list[str]]:
    from exporter.render import Format, Renderer, flat_values, render, series_keys
    from exporter.samples import Sample
    from exporter.sources.simulated import SimulatedSource
    from tests.test_render import reference

    source = SimulatedSource(gpus=gpus)
    kept = Renderer()
    kept.layout([series_keys(source.collect())])

    def timed_on_fresh_samples(work: Callable[[list], object]) -> float:
        best = float("inf")
        for _ in range(repeat):
            samples = source.collect()
            start = time.perf_counter()
            work(samples)
            best = min(best, time.perf_counter() - start)
        return best * 1e3

    def ours(fmt: Format, fresh: bool) -> float:
        def work(samples):
            layout = (Renderer() if fresh else kept).layout([series_keys(samples)])
            return render(layout, flat_values(samples, layout), fmt)

        return timed_on_fresh_samples(work)

    samples = source.collect()
    series = len(samples)
    floor_ms = timed_on_fresh_samples(floor)
    layout = kept.layout([series_keys(samples)])
    om = render(layout, flat_values(samples, layout), Format.OPENMETRICS)

    toggling = Renderer()
    flips = iter(range(10**9))

    def one_series_changed(samples):
        """Every other call the last series differs: a new layout each time, the strings of
        the other series kept (what a process appearing or leaving costs)."""
        if next(flips) % 2:
            last = samples[-1]
            labels = (*last.labels[:-1], (last.labels[-1][0], "changed"))
            samples = [*samples[:-1], Sample(last.name, labels, last.value)]
        layout = toggling.layout([series_keys(samples)])
        return render(layout, flat_values(samples, layout), Format.OPENMETRICS)

    figures = {
        "floor (hand loop)": floor_ms,
        "exporter, text": ours(Format.TEXT, fresh=False),
        "exporter, openmetrics": ours(Format.OPENMETRICS, fresh=False),
        "exporter, openmetrics, one series changed": timed_on_fresh_samples(one_series_changed),
        "exporter, openmetrics, all series new": ours(Format.OPENMETRICS, fresh=True),
        "prometheus_client, text": timed_on_fresh_samples(lambda s: reference(s)[Format.TEXT]),
        "gzip level 1 (openmetrics body)": best_ms(lambda: gzip.compress(om, 1, mtime=0), repeat),
        "gzip level 6 (openmetrics body)": best_ms(lambda: gzip.compress(om, 6, mtime=0), repeat),
    }
    rows = []
    for name, value in figures.items():
        size = ""
        if name.startswith("gzip"):
            size = str(len(gzip.compress(om, int(name.split()[2]), mtime=0)))
        elif name == "exporter, openmetrics":
            size = str(len(om))
        rows.append([f"{gpus}", str(series), name, f"{value:.3f}", f"{value / floor_ms:.2f}", size])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default="8,64", help="fleet sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=30, help="best of this many")
    args = parser.parse_args()
    rows = []
    for gpus in (int(g) for g in args.gpus.split(",")):
        rows += measure(gpus, args.repeat)
    table(
        f"Render, samples → bytes, simulated fleet, best of {args.repeat} (ms)",
        ["GPUs", "series", "path", "ms", "x floor", "bytes"],
        rows,
        note="(prometheus_client: the reference writers the tests compare against, the former "
        "renderer; the text figure includes building its metric families)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
