#!/usr/bin/env python3
"""What the DCGM source itself costs per collection, on the fake DCGM bindings.

The fake answers in Python, like pydcgm's own wrappers over libdcgm, so its time stands in for
the bindings' share; the rest is the source's: blank checks, unit conversions, counters, catalog
samples. Measured side by side in one run, for 1 and 8 GPUs:

- `GetLatest x3`: reading the three field groups (core, recent, profiling) through the (fake)
  bindings, nothing else;
- `collect()`: a whole DcgmSource collection (those reads, NVLink states, conversion).

Usage: .venv/bin/python bench/dcgm_source.py [--cycles N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fake_dcgm import BINDINGS_DIR, FakeDcgm  # noqa: E402

os.environ["DCGM_BINDINGS_PATH"] = str(BINDINGS_DIR)

from exporter.sources.dcgm import DcgmSource  # noqa: E402


def interleaved(a, b, cycles: int) -> tuple[list[float], list[float]]:
    """Time `a` and `b` alternately, so machine noise falls on both alike."""
    ta, tb = [], []
    for _ in range(cycles):
        for fn, out in ((a, ta), (b, tb)):
            started = time.perf_counter()
            fn()
            out.append(time.perf_counter() - started)
    return ta, tb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300)
    args = parser.parse_args()
    fake = FakeDcgm()
    rows = []
    for gpus in (1, 8):
        fake.configure(f"gpus {gpus}\n")
        source = DcgmSource()
        samples = source.collect()
        conn = source._conn
        fgs = [source._basic_fg, source._recent_fg, source._profiling._fg]

        def read_only(conn=conn, fgs=fgs) -> None:
            for fg in fgs:
                conn.latest(fg)

        reads, collects = interleaved(read_only, source.collect, args.cycles)
        source.close()
        r, c = statistics.median(reads), statistics.median(collects)
        rows.append((gpus, len(samples), r * 1e3, c * 1e3, (c - r) * 1e3, c / r))
    print(f"{'GPUs':>4}  {'series':>6}  {'GetLatest x3':>12}  {'collect()':>10}  "
          f"{'source part':>11}  {'collect/read':>12}")  # fmt: skip
    for gpus, n, r, c, own, ratio in rows:
        print(f"{gpus:>4}  {n:>6}  {r:>9.3f} ms  {c:>7.3f} ms  {own:>8.3f} ms  {ratio:>11.2f}x")
    print(f"(median of {args.cycles} cycles each)")


if __name__ == "__main__":
    main()
