#!/usr/bin/env python3
"""Fault → page and recovery → resolve latency of the whole alerting pipeline.

Runs the end-to-end alert test's pipeline (tests/test_alerts_e2e.py) several times: the
simulated fleet with thermal_throttle, memory_leak, fragmentation and gpu_lost scenarios,
Prometheus with the generated rules (`for` durations and windows scaled by 1/60),
Alertmanager with the generated routing, and a local receiver standing in for PagerDuty.
Prints, per faulty GPU and critical alert, the median (and max) seconds from the scenario
start and from the threshold crossing to the page, and from the scenario end and from the
metric going back under the threshold to the resolve event. Each run takes about 30 s.

Usage: .venv/bin/python bench/alert_latency.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="pipeline runs (about 30 s each)")
    args = parser.parse_args()
    from tests.test_alerts_e2e import latency_table, run_faults

    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="alert-latency-") as tmp:
            run = run_faults(Path(tmp))
        print(f"run {i + 1}/{args.runs}: {len(run.events)} PagerDuty events in {run.elapsed:.1f} s")
        runs.append(run)
    print()
    print(latency_table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
