#!/usr/bin/env python3
"""Fault → page and recovery → clear latency of the whole alerting pipeline, per fault class.

Runs the stories of the end-to-end alert test (tests/test_alerts_e2e.py) several times, each
through real exporters, Prometheus with the generated rules (every duration scaled by 1/60)
and Alertmanager with the generated routing, to a local receiver standing in for PagerDuty:

- faults: thermal runaway, memory leak and fragmentation, an Xid that needs the application
  restarted (warning) on node-a; a GPU lost that answers again needing a reboot, and a GPU
  whose driver asks for a reset, on node-b; about 75 s a run (it waits for the Xid to clear);
- hung: every call into the (fake) NVML library blocks; about 25 s a run;
- fleet: the same GPU overheats on three nodes at once; about 60 s a run.

Prints, per story, alert and GPU, the median (and max) seconds from the condition on the
exporter's metrics to the page, and from its end to the clear (the first event of the
incident that no longer names the alert); each also less what the rules add by design.

Usage: .venv/bin/python bench/alert_latency.py [--runs 3] [--stories faults,hung,fleet]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import table

if TYPE_CHECKING:
    from tests.test_alerts_e2e import StoryRun

STORIES = ("faults", "hung", "fleet")
HEADER = [
    "story",
    "node",
    "GPU",
    "alert",
    "wait",
    "hold",
    "condition → page",
    "less wait",
    "condition ends → clear",
    "less hold",
    "runs",
]
Key = tuple[str, str, str, str]


def latencies(run: StoryRun) -> dict[Key, tuple[float, float]]:
    """(story, node, GPU, alert) → seconds from the condition to the page, and from its end
    to the clear (nan when not seen); for each expectation whose condition was seen."""
    out = {}
    for x in run.expects:
        began, ended = run.watch.began.get(x), run.watch.ended.get(x)
        page = next((e for e in run.events if x.pages(e)), None)
        if began is None or page is None:
            continue
        clear = next(
            (
                e
                for e in run.events
                if ended is not None
                and e.at > ended
                and e.body["dedup_key"] == page.body["dedup_key"]
                and x.alert not in e.alertnames
            ),
            None,
        )
        cleared = clear.at - ended if clear is not None and ended is not None else math.nan
        out[x.story, x.node, x.gpu or "-", f"{x.alert} ({x.severity})"] = (
            page.at - began,
            cleared,
        )
    return out


def _cell(values: Sequence[float]) -> str:
    seen = [v for v in values if not math.isnan(v)]
    if not seen:
        return "-"
    text = f"{statistics.median(seen):.1f}"
    return text + (f" (max {max(seen):.1f})" if len(seen) > 1 else "")


def rows(runs: Sequence[StoryRun]) -> list[list[str]]:
    """The table's rows: medians (and maxima) over the runs of each story."""
    measured: dict[Key, list[tuple[float, float]]] = {}
    designed: dict[Key, tuple[float, float]] = {}
    for run in runs:
        for key, values in latencies(run).items():
            measured.setdefault(key, []).append(values)
        for x in run.expects:
            designed[x.story, x.node, x.gpu or "-", f"{x.alert} ({x.severity})"] = (x.wait, x.hold)
    out = []
    for key, values in measured.items():
        wait, hold = designed[key]
        pages = [v[0] for v in values]
        clears = [v[1] for v in values]
        out.append(
            [
                *key,
                f"{wait:g}",
                f"{hold:g}",
                _cell(pages),
                _cell([p - wait for p in pages]),
                _cell(clears),
                _cell([c - hold for c in clears]),
                str(len(values)),
            ]
        )
    return out


def story_runners(workdir: Path) -> dict[str, Callable[[Path], StoryRun]]:
    from tests.fake_nvml import build
    from tests.test_alerts_e2e import run_faults, run_fleet_wide, run_hung_nvml

    library: list[Path] = []

    def hung(tmp: Path) -> StoryRun:
        if not library:  # compiled once, on first use
            library.append(build(workdir / "fake-nvml"))
        return run_hung_nvml(tmp, library[0])

    return {
        "faults": lambda tmp: run_faults(tmp, until_cleared=True),
        "hung": hung,
        "fleet": run_fleet_wide,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each story")
    parser.add_argument(
        "--stories", default=",".join(STORIES), help=f"comma-separated, of {', '.join(STORIES)}"
    )
    args = parser.parse_args()
    stories = [s.strip() for s in args.stories.split(",") if s.strip()]
    unknown = sorted(set(stories) - set(STORIES))
    if unknown or args.runs < 1:
        parser.error(f"unknown stories {unknown}" if unknown else "--runs must be at least 1")
    from tests.test_alerts_e2e import FLEET_GROUP_WAIT, SCALE

    runs = []
    with tempfile.TemporaryDirectory(prefix="alert-latency-") as workdir:
        runners = story_runners(Path(workdir))
        for story in stories:
            for i in range(args.runs):
                with tempfile.TemporaryDirectory(prefix=f"{story}-", dir=workdir) as tmp:
                    run = runners[story](Path(tmp))
                print(
                    f"{story} {i + 1}/{args.runs}: {len(run.events)} PagerDuty events in "
                    f"{run.elapsed:.1f} s",
                    flush=True,
                )
                runs.append(run)
    table(
        f"Alert latency in seconds: median (max) over {args.runs} run(s) of each story",
        HEADER,
        rows(runs),
        note=(
            f"Rules scaled by {SCALE:.4g}; scrape and evaluation every 1 s; Alertmanager "
            f"group_wait 1 s ({FLEET_GROUP_WAIT:g} s in the fleet story), group_interval 1 s; "
            "exporter conditions polled every 0.25 s. wait: what the rules add before the "
            "page by design (the tier's `for`; fleet: per-node `for` + fleet `for` + "
            "group_wait); hold: what they add before the clear (keep_firing_for; Xid: its "
            "window + keep_firing_for). A clear is the first event of the incident that no "
            "longer names the alert (a resolve, or an update while other alerts go on)."
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
