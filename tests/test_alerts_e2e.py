"""End to end on 127.0.0.1: exporters (the simulated fleet with fault scenarios, and the fake
NVML) → Prometheus (the generated rules, every duration scaled by 1/60) → Alertmanager (the
generated routing) → a local HTTP receiver standing in for PagerDuty's Events API v2.

The on-call stories, each a run of the whole pipeline:
- faults on the GPUs of one node page once per GPU, with its identity, and resolve; an Xid
  that only needs the application restarted reaches the low-urgency service; a GPU lost on
  another node pages, silences that GPU's Xid and the node's allocator alerts, and GpuLost
  clears when the GPU answers again; an alert of someone else's posted to the same
  Alertmanager never reaches PagerDuty;
- NVML hangs (every call into the library blocks): the node pages critical, and the page
  resolves when NVML answers again;
- the same fault on three nodes is one fleet-wide page, and no per-node page of it.

Prints the PagerDuty events of each story (run with `-s` to see them); bench/alert_latency.py
runs the stories several times and measures their latencies. Nothing here asserts on a
duration: deadlines only bound the waits.
"""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import json
import math
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from alerts.alertmanager import AlertmanagerOptions, render_alertmanager
from alerts.definitions import FLEET_ALERT, all_alerts
from alerts.model import TierRule
from alerts.rules import MIXIN_LABEL, render_rules
from alerts.thresholds import DEFAULTS
from tests.conftest import RunningExporter, parse_metrics, run_exporter, series
from tests.fake_nvml import ControlFile, subprocess_env
from tests.servers import (
    PAGERDUTY_ENQUEUE,
    Prometheus,
    Received,
    Receiver,
    binary,
    free_port,
    http_get,
    pagerduty_receiver,
    run_prometheus,
    run_server,
    scrape_config,
)

pytestmark = pytest.mark.e2e

#: Every `for`, window and horizon of the rules, scaled: 5m → 5s, 30s → 500ms, 1d → 24m.
SCALE = 1 / 60
THRESHOLDS = DEFAULTS.scaled(SCALE)
START = 8.0  # seconds after an exporter started: Prometheus has scraped a baseline by then
DURATION = 18.0
CRITICAL_KEY = "critical-routing-key-e2e"
WARNING_KEY = "warning-routing-key-e2e"
DEADLINE = 60.0
GPU_COUNT = "cluster_node:gpu_present:count"

SICK_NODE = "node-a"  # several faults, one per GPU
LOST_NODE = "node-b"  # a GPU falls off the bus, then needs a reboot; another needs a reset
HUNG_NODE = "node-n"  # NVML hangs
FLEET_NODES = ("node-a", "node-b", "node-c")  # the same fault everywhere
XID_EVERY = 3.0
XID_EVENTS = math.ceil(DURATION / XID_EVERY)  # at the start, then every XID_EVERY seconds
SICK_SCENARIOS = (
    "thermal_throttle:gpu=0",
    "memory_leak:gpu=2,ramp=2",
    "fragmentation:gpu=3,ramp=4",
    f"xid:gpu=5,code=31,every={XID_EVERY:g}",  # RESTART_APP: a warning
)
LOST = 10.0  # how long the lost GPU stays off the bus
REBOOT = 4.0  # how long after it answers again the node is "rebooted"
LOST_SCENARIOS = (
    f"gpu_lost:gpu=4,duration={LOST:g},reboot={REBOOT:g}",
    "memory_leak:gpu=2,ramp=2",
    "recovery_action:gpu=6,action=reset",
)
FAULTY = {SICK_NODE: {"0", "2", "3", "5"}, LOST_NODE: {"2", "4", "6"}}
FOREIGN = {"alertname": "SomeoneElsesAlert", "severity": "critical", "node": SICK_NODE}
FLEET_GPU = "1"
FLEET_DURATION = 30.0
#: Long enough for the fleet alert to fire (the per-node `for`, the fleet `for` and a few
#: evaluations) before Alertmanager first notifies a per-node group. The defaults are the
#: other way round (group_wait 30s, fleet `for` 2m): there the per-node pages go out first.
FLEET_GROUP_WAIT = 12.0


# --- the rules' timing ----------------------------------------------------------------------------


def tier(alert: str, severity: str) -> TierRule:
    """The scaled rule of one tier of an alert."""
    for a in all_alerts(THRESHOLDS):
        for t in a.tiers:
            if a.name == alert and t.severity == severity:
                return t
    raise KeyError(f"no {severity} tier of {alert}")


def has_tier(alert: str, severity: str) -> bool:
    try:
        tier(alert, severity)
    except KeyError:
        return False
    return True


def for_of(alert: str, severity: str) -> float:
    return tier(alert, severity).for_.seconds


def keep_of(alert: str, severity: str) -> float:
    keep = tier(alert, severity).keep_firing_for
    return (THRESHOLDS.keep_firing_for if keep is None else keep).seconds


# --- servers ------------------------------------------------------------------------------------


@contextmanager
def alertmanager(tmp: Path, receiver: Receiver, group_wait: float) -> Iterator[str]:
    port = free_port()
    (tmp / "critical.key").write_text(CRITICAL_KEY + "\n")
    (tmp / "warning.key").write_text(WARNING_KEY + "\n")
    options = AlertmanagerOptions(
        pagerduty_url=receiver.url + PAGERDUTY_ENQUEUE,
        critical_routing_key_file=str(tmp / "critical.key"),
        warning_routing_key_file=str(tmp / "warning.key"),
        watchdog_url=receiver.url + "/watchdog",
        group_wait=f"{group_wait:g}s",
        group_interval="1s",
        watchdog_repeat_interval="5s",
    )
    config = tmp / "alertmanager.yml"
    config.write_text(render_alertmanager(options))
    cmd = [
        binary("alertmanager", "prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    with run_server(cmd, url + "/-/ready", tmp / "alertmanager.log"):
        yield url


@contextmanager
def prometheus(
    tmp: Path, exporter_urls: Sequence[str], alertmanager_url: str
) -> Iterator[Prometheus]:
    rules = tmp / "rules.yml"
    rules.write_text(render_rules(THRESHOLDS))
    with run_prometheus(
        tmp,
        [scrape_config(THRESHOLDS.exporter_job, exporter_urls)],
        rule_files=[rules],
        alertmanager_url=alertmanager_url,
        # Alerts evaluated before Alertmanager is discovered are dropped, and resent only
        # after this delay (1m by default): the always-firing Watchdog would arrive late.
        flags=["--rules.alert.resend-delay=1s"],
    ) as prom:
        yield prom


def post_alert(alertmanager_url: str, labels: dict[str, str]) -> None:
    """Post one alert straight to Alertmanager's API, as another Prometheus would."""
    body = json.dumps([{"labels": labels, "annotations": {"summary": "not ours"}}]).encode()
    request = urllib.request.Request(
        alertmanager_url + "/api/v2/alerts",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200, resp.read()


# --- Alertmanager's view ------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One state Alertmanager reported for an alert."""

    alertname: str
    node: str
    gpu: str
    severity: str
    problem: str
    state: str  # active, suppressed, unprocessed
    inhibitors: frozenset[str]  # the names of the alerts that inhibit it
    receivers: tuple[str, ...]
    ours: bool  # labelled with this project's mixin label


@dataclass
class AlertStates:
    """Every state Alertmanager reported, polled from its API."""

    seen: set[Seen] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def where(self, **match: object) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if all(getattr(s, k) == v for k, v in match.items())]

    def inhibited_by(self, inhibitor: str, **match: object) -> bool:
        return any(inhibitor in s.inhibitors for s in self.where(**match))


@contextmanager
def watch_alertmanager(url: str, interval: float = 0.5) -> Iterator[AlertStates]:
    states = AlertStates()
    stop = threading.Event()
    mixin, ours = MIXIN_LABEL

    def poll() -> None:
        while not stop.wait(interval):
            try:
                status, body = http_get(url + "/api/v2/alerts")
            except OSError:
                continue
            if status != 200:
                continue
            alerts = json.loads(body)
            names = {a["fingerprint"]: a["labels"]["alertname"] for a in alerts}
            for a in alerts:
                labels, st = a["labels"], a["status"]
                seen = Seen(
                    alertname=labels["alertname"],
                    node=labels.get("node", ""),
                    gpu=labels.get("gpu", ""),
                    severity=labels.get("severity", ""),
                    problem=labels.get("problem", ""),
                    state=st["state"],
                    inhibitors=frozenset(names.get(f, f) for f in st["inhibitedBy"] or ()),
                    receivers=tuple(sorted(r["name"] for r in a["receivers"])),
                    ours=labels.get(mixin) == ours,
                )
                with states.lock:
                    states.seen.add(seen)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield states
    finally:
        stop.set()
        thread.join(timeout=5)


# --- what must page, and when its condition held ---------------------------------------------

Metrics = dict[str, dict]  # node → its exporter's parsed metrics


@dataclass(frozen=True)
class Expect:
    """An alert that must page: the condition on the exporters' metrics that makes it fire,
    and the PagerDuty events that carry it."""

    story: str
    node: str  # the node, or "fleet" for the fleet-wide alert
    gpu: str  # "" for an alert on the node
    alert: str  # the alert that must be named in the page
    severity: str
    holds: Callable[[Metrics], bool]
    #: The seconds the rules and routing add by design between the condition and the page:
    #: the tier's `for` (and, for the fleet alert, the per-node `for` and the group_wait).
    wait: float
    #: The seconds they add between the condition's end and the clear (keep_firing_for, and
    #: the window over which the condition is seen).
    hold: float

    @property
    def routing_key(self) -> str:
        return CRITICAL_KEY if self.severity == "critical" else WARNING_KEY

    def pages(self, e: Received) -> bool:
        """`e` is a trigger that names this alert, on this GPU or node, to the right service."""
        if e.action != "trigger" or e.key != self.routing_key or self.alert not in e.alertnames:
            return False
        if self.node == "fleet":
            return True
        return (e.node, e.gpu) == (self.node, self.gpu)


def _one(m: dict, name: str, gpu: str, **labels: str) -> float:
    found = series(m, name, gpu=gpu, **labels)
    return next(iter(found.values())) if found else float("nan")


def _ratio(m: dict, gpu: str) -> float:
    return _one(m, "gpu_memory_used_bytes", gpu) / _one(m, "gpu_memory_total_bytes", gpu)


def _hot(m: dict, gpu: str) -> bool:
    return _one(m, "gpu_temperature_celsius", gpu, sensor="gpu") > 90


def _fragmented(m: dict, gpu: str) -> bool:
    frag = THRESHOLDS.torch_fragmentation
    return (
        _one(m, "torch_cuda_fragmentation_ratio", gpu) > frag.tiers.critical.threshold
        and _one(m, "torch_cuda_memory_inactive_split_bytes", gpu) > frag.min_stranded_bytes
        and _ratio(m, gpu) > frag.pressure
    )


def _xids(m: dict, gpu: str, code: str) -> float:
    return sum(series(m, "gpu_xid_errors_total", gpu=gpu, xid=code).values())


def _expect(
    story: str,
    node: str,
    gpu: str,
    alert: str,
    severity: str,
    holds: Callable[[dict], bool],
    hold: float | None = None,
) -> Expect:
    """An alert of one node that must page; its scaled `for` is the wait, its
    keep_firing_for the hold (unless given)."""
    return Expect(
        story,
        node,
        gpu,
        alert,
        severity,
        lambda ms: node in ms and holds(ms[node]),
        for_of(alert, severity),
        keep_of(alert, severity) if hold is None else hold,
    )


def _xid_hold() -> float:
    xid = THRESHOLDS.gpu_xid
    return xid.window.seconds + xid.keep_warning.seconds


FAULT_EXPECTS = (
    _expect("faults", SICK_NODE, "0", "GpuTemperatureHigh", "critical", lambda m: _hot(m, "0")),
    _expect("faults", SICK_NODE, "2", "GpuMemoryHigh", "critical", lambda m: _ratio(m, "2") > 0.9),
    _expect("faults", SICK_NODE, "3", "GpuMemoryHigh", "critical", lambda m: _ratio(m, "3") > 0.9),
    _expect(
        "faults", SICK_NODE, "3", "TorchCudaFragmentationHigh", "critical",
        lambda m: _fragmented(m, "3"),
    ),
    _expect(
        "faults", SICK_NODE, "5", "GpuXidError", "warning",
        lambda m: 0 < _xids(m, "5", "31") < XID_EVENTS, _xid_hold(),  # ends with the last
    ),
    _expect("faults", LOST_NODE, "4", "GpuLost", "critical", lambda m: _one(m, "gpu_up", "4") == 0),
    _expect(
        "faults", LOST_NODE, "4", "GpuRecoveryActionRequired", "critical",
        lambda m: _one(m, "gpu_recovery_action", "4") > 0,
    ),
    _expect("faults", LOST_NODE, "2", "GpuMemoryHigh", "critical", lambda m: _ratio(m, "2") > 0.9),
    _expect(
        "faults", LOST_NODE, "6", "GpuRecoveryActionRequired", "critical",
        lambda m: _one(m, "gpu_recovery_action", "6") > 0,
    ),
)  # fmt: skip


@dataclass
class Watch:
    """When each expected condition first held, and when it stopped holding afterwards."""

    began: dict[Expect, float] = field(default_factory=dict)
    ended: dict[Expect, float] = field(default_factory=dict)
    latest: Metrics = field(default_factory=dict)


@contextmanager
def watch_exporters(
    exporters: dict[str, RunningExporter],
    expects: Sequence[Expect],
    interval: float = 0.25,
    ongoing: Callable[[Expect, Metrics], bool] = lambda e, m: e.holds(m),
) -> Iterator[Watch]:
    """Poll every exporter; `ongoing` says whether an expectation's fault is still going on
    (by default: its condition holds)."""
    watch = Watch()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            metrics: Metrics = {}
            for node, exporter in exporters.items():
                with suppress(OSError):
                    metrics[node] = parse_metrics(http_get(exporter.url + "/metrics")[1])
            now = time.monotonic()
            watch.latest = metrics
            for expect in expects:
                holds = ongoing(expect, metrics)
                if holds and expect not in watch.began:
                    watch.began[expect] = now
                elif not holds and expect in watch.began and expect not in watch.ended:
                    watch.ended[expect] = now

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join(timeout=5)


# --- the pipeline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    name: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Pipeline:
    pd: Receiver
    am_url: str
    prom: Prometheus
    exporters: dict[str, RunningExporter]
    states: AlertStates
    started: float

    def events(self) -> list[Received]:
        return self.pd.received(PAGERDUTY_ENQUEUE)

    def describe(self) -> str:
        return describe(self.events(), self.started)

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> Any:
        return wait_for(predicate, what, timeout, self.describe)


def describe(events: Sequence[Received], since: float) -> str:
    return "\n".join(
        f"{e.at - since:6.1f} {e.action:8} {e.key[:8]} {e.node or '-'} gpu={e.gpu or '-'} "
        f"class={e.problem} {sorted(e.alertnames)}"
        for e in events
    )


def wait_for(
    predicate: Callable[[], object],
    what: str,
    timeout: float = DEADLINE,
    context: Callable[[], str] = str,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{context()}"
        time.sleep(0.2)


def simulated(name: str, scenarios: Sequence[str]) -> Node:
    """A node of the simulated fleet; each scenario starts at START and lasts DURATION unless
    it says otherwise."""
    args = ["--backend=simulated", "--collect.interval=0.5"]
    for spec in scenarios:
        name_, _, keys = spec.partition(":")
        given = {k.split("=")[0] for k in keys.split(",") if k}
        extra = [f"start={START:g}"] + ([] if "duration" in given else [f"duration={DURATION:g}"])
        args.append(f"--simulate.scenario={name_}:{','.join(filter(None, [keys, *extra]))}")
    return Node(name, tuple(args))


@contextmanager
def pipeline(tmp: Path, nodes: Sequence[Node], group_wait: float = 1.0) -> Iterator[Pipeline]:
    """The PagerDuty stand-in, Alertmanager, one exporter per node (NODE_NAME set, started
    side by side) and Prometheus scraping them; everything stopped afterwards."""
    started = time.monotonic()
    with ExitStack() as stack:
        pd = stack.enter_context(pagerduty_receiver())
        am_url = stack.enter_context(alertmanager(tmp, pd, group_wait))
        exporters = _start_exporters(stack, nodes)
        prom = stack.enter_context(prometheus(tmp, [e.url for e in exporters.values()], am_url))
        states = stack.enter_context(watch_alertmanager(am_url))
        yield Pipeline(pd, am_url, prom, exporters, states, started)


def _start_exporters(stack: ExitStack, nodes: Sequence[Node]) -> dict[str, RunningExporter]:
    """Start the exporters at once (their scenarios' clocks start together), each stopped by
    `stack`, also when another fails to start."""
    managers: dict[str, AbstractContextManager[RunningExporter]] = {
        n.name: run_exporter(*n.args, env={"NODE_NAME": n.name, **n.env}) for n in nodes
    }
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        futures = {name: pool.submit(cm.__enter__) for name, cm in managers.items()}
    exporters = {}
    errors = []
    for name, future in futures.items():
        try:
            exporters[name] = future.result()
            stack.push(managers[name])
        except Exception as exc:  # the others are stopped, then the first error raised
            errors.append(exc)
    if errors:
        raise errors[0]
    return exporters


@dataclass
class StoryRun:
    """What one story produced through the whole pipeline."""

    story: str
    expects: Sequence[Expect]
    events: list[Received]  # PagerDuty events, in arrival order
    watchdog: list[Received]
    watch: Watch
    states: AlertStates
    started: float
    elapsed: float

    def described(self) -> str:
        return describe(self.events, self.started)

    def triggers(self, key: str, node: str, gpu: str = "") -> list[Received]:
        return [
            e
            for e in self.events
            if e.action == "trigger" and e.key == key and (e.node, e.gpu) == (node, gpu)
        ]


def incidents(events: Sequence[Received], action: str) -> set[tuple[str, str]]:
    return {(e.key, e.body["dedup_key"]) for e in events if e.action == action}


# --- story 1: faults on two nodes, and someone else's alert -----------------------------------


def run_faults(tmp: Path, *, until_cleared: bool = False) -> StoryRun:
    """Run the faults until every expected alert has paged, every incident except the lost
    GPU's (its Xid 79 is latched for hours) has resolved, GpuLost has cleared and, with
    `until_cleared`, the warning Xid has cleared too."""
    nodes = [simulated(SICK_NODE, SICK_SCENARIOS), simulated(LOST_NODE, LOST_SCENARIOS)]
    lost = next(e for e in FAULT_EXPECTS if e.alert == "GpuLost")
    xid = next(e for e in FAULT_EXPECTS if e.alert == "GpuXidError")
    with (
        pipeline(tmp, nodes) as p,
        watch_exporters(p.exporters, FAULT_EXPECTS) as watch,
    ):
        post_alert(p.am_url, FOREIGN)
        p.wait(
            lambda: all(any(x.pages(e) for e in p.events()) for x in FAULT_EXPECTS),
            "a page for every fault",
        )

        def lost_cleared() -> bool:
            """The lost GPU's incident was updated, after the GPU answered, without GpuLost
            among its firing alerts (it resolves, or goes on with a latched alert)."""
            back = watch.ended.get(lost)
            return back is not None and any(
                e.at > back
                and (e.node, e.gpu) == (LOST_NODE, "4")
                and "GpuLost" not in e.alertnames
                for e in p.events()
            )

        def resolved() -> bool:
            events = p.events()
            opened = incidents(
                [e for e in events if (e.node, e.gpu) != (LOST_NODE, "4")], "trigger"
            )
            if until_cleared:
                opened |= incidents([e for e in events if xid.pages(e)], "trigger")
            else:
                opened -= incidents([e for e in events if xid.pages(e)], "trigger")
            return opened <= incidents(events, "resolve")

        p.wait(
            lambda: lost_cleared() and resolved(),
            "GpuLost to clear and every other incident to resolve",
            timeout=START + DURATION + DEADLINE + (_xid_hold() if until_cleared else 0),
        )
        return StoryRun(
            "faults",
            FAULT_EXPECTS,
            p.events(),
            p.pd.received("/watchdog"),
            watch,
            p.states,
            p.started,
            time.monotonic() - p.started,
        )


def test_faults_page_once_with_the_gpu_and_resolve_and_a_foreign_alert_never_pages(tmp_path):
    run = run_faults(tmp_path)
    events, states, described = run.events, run.states, run.described()

    # The payload: severity from the label; the node, GPU and uuid in the details (never the
    # pod or the instance, which a rollout changes); the links to the runbook and dashboard.
    for e in events:
        body, payload = e.body, e.body["payload"]
        assert e.key in (CRITICAL_KEY, WARNING_KEY), body
        assert payload["severity"] == ("critical" if e.key == CRITICAL_KEY else "warning"), body
        assert len(body["dedup_key"]) == 64 and int(body["dedup_key"], 16) >= 0, body
        assert e.node in FAULTY, body
        assert payload["source"] == e.node, body
        assert "instance" not in e.details and "pod" not in json.dumps(e.details), body
        assert e.gpu in FAULTY[e.node], f"a healthy GPU paged:\n{described}"
        if e.action == "trigger":
            assert payload["component"] == f"gpu{e.gpu}", body
            assert e.details["uuid"].startswith("GPU-"), body
            hrefs = [link["href"] for link in body["links"]]
            assert hrefs[0].endswith(".md") and "/alerts/runbooks/" in hrefs[0], hrefs
            assert f"var-node={e.node}" in hrefs[1] and f"var-gpu={e.gpu}" in hrefs[1], hrefs
    # Both tiers fired and only the critical one paged: Alertmanager held the warning as
    # inhibited by the critical, and no warning event named that alert on that GPU while the
    # critical condition held. (Once it clears, a warning condition that still holds, like a
    # GPU cooling from 92 to 85 °C, is delivered to the low-urgency service.)
    for x in run.expects:
        if x.severity != "critical" or not has_tier(x.alert, "warning"):
            continue
        assert states.inhibited_by(
            x.alert, alertname=x.alert, node=x.node, gpu=x.gpu, severity="warning"
        ), (x.alert, x.node, x.gpu, sorted(states.seen, key=str))
        critical_end = run.watch.ended[x]
        named = [
            e for e in run.triggers(WARNING_KEY, x.node, x.gpu) if x.alert in e.alertnames
            and e.at < critical_end
        ]  # fmt: skip
        assert not named, f"{x.alert} on {x.node} GPU {x.gpu} reached the warning service"
    # An Xid that only needs the application restarted reaches the low-urgency service only.
    assert not [e for e in run.triggers(CRITICAL_KEY, SICK_NODE, "5")], described

    # The lost GPU: GpuLost pages; it silences the GPU's Xid 79 and the allocator alerts of
    # its node (the memory leak's OOMs on GPU 2), which page only once the GPU answers again.
    lost = run.triggers(CRITICAL_KEY, LOST_NODE, "4")
    assert lost and "GpuLost" in lost[0].alertnames, described
    assert states.inhibited_by("GpuLost", alertname="GpuXidError", node=LOST_NODE, gpu="4")
    assert states.inhibited_by(
        "GpuLost", alertname="TorchCudaOutOfMemory", node=LOST_NODE, gpu="2"
    ), sorted(states.where(node=LOST_NODE, gpu="2"), key=str)
    back = run.watch.ended[next(x for x in run.expects if x.alert == "GpuLost")]
    assert all(
        "TorchCudaOutOfMemory" not in e.alertnames or e.at > back
        for e in run.triggers(CRITICAL_KEY, LOST_NODE, "2")
    ), described
    # GpuLost clears when the GPU answers: the GPU's incident carries on without it, with
    # the driver's recovery action (a node reboot) until the "reboot".
    after = [e for e in run.events if e.at > back and (e.node, e.gpu) == (LOST_NODE, "4")]
    assert after and "GpuLost" not in after[-1].alertnames, described
    assert "GpuRecoveryActionRequired" in after[0].alertnames, described
    # One sick GPU is one incident per service: one dedup_key per (node, GPU, routing key).
    keys: dict[tuple[str, str, str], set[str]] = {}
    for e in events:
        keys.setdefault((e.node, e.gpu, e.key), set()).add(e.body["dedup_key"])
    assert all(len(k) == 1 for k in keys.values()), described

    # Someone else's alert reached Alertmanager and went to the null receiver: never to
    # PagerDuty, never to the dead man's switch, and it inhibits nothing of ours.
    foreign = states.where(alertname=FOREIGN["alertname"])
    assert foreign and all(s.receivers == ("null",) and not s.ours for s in foreign), foreign
    assert FOREIGN["alertname"] not in json.dumps([e.body for e in events + run.watchdog])
    assert not any(FOREIGN["alertname"] in s.inhibitors for s in states.where()), described
    # The Watchdog reached its own receiver, and only it did.
    assert run.watchdog, "no Watchdog heartbeat"
    assert {e.body["commonLabels"]["alertname"] for e in run.watchdog} == {"Watchdog"}

    print("\n" + described)


# --- story 2: NVML hangs ------------------------------------------------------------------------


def lease_break_time() -> float:
    """Seconds the kernel lets a lease holder keep another process's open() waiting."""
    return float(Path("/proc/sys/fs/lease-break-time").read_text())


@contextmanager
def hung_nvml(control: Path) -> Iterator[float]:
    """Make every call into the fake NVML hang, until the block ends; yields the monotonic
    time by which the hang ends regardless (the kernel breaks the lease).

    The fake applies the new lines of its control file under its global lock, on the next
    call into the library; this process holds a write lease on that file and appends a line,
    so the fake's open() of it blocks, with the lock held: the first call hangs, and every
    later call waits for the lock, as in a wedged driver. Releasing the lease lets them all
    return. The fake itself is not changed."""
    previous = signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease-break notification
    fd = os.open(control, os.O_WRONLY | os.O_APPEND)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
                break
            except OSError as exc:  # the fake has the file open this very moment
                if exc.errno not in (errno.EAGAIN, errno.EBUSY) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        hang_ends = time.monotonic() + lease_break_time()
        os.write(fd, b"# this line is read once the lease is released\n")
        yield hang_ends
    finally:
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        finally:
            os.close(fd)
            signal.signal(signal.SIGIO, previous)


def _source_down(m: dict) -> bool:
    return sum(series(m, "exporter_source_up", source="nvml").values()) == 0


HUNG_EXPECTS = (
    _expect("hung NVML", HUNG_NODE, "", "GpuExporterSourceDown", "critical", _source_down),
)


def run_hung_nvml(tmp: Path, library: Path) -> StoryRun:
    """An exporter on the fake NVML (4 GPUs); NVML hangs until the node has paged and
    GpuMissing has fired too (the GPUs' series are gone), then answers again; runs until the
    page resolves."""
    (tmp / "fake.cfg").write_text("gpus 4\n")
    control = ControlFile(tmp / "control")
    env = subprocess_env(library, tmp / "fake.cfg", control.path)
    node = Node(HUNG_NODE, ("--backend=nvml", "--collect.interval=0.5"), env)
    (down,) = HUNG_EXPECTS
    with pipeline(tmp, [node]) as p, watch_exporters(p.exporters, HUNG_EXPECTS) as watch:
        # The baseline GpuMissing compares with: Prometheus has recorded the node's 4 GPUs.
        p.prom.wait_for_samples(f'{GPU_COUNT}{{node="{HUNG_NODE}"}} == 4')
        with hung_nvml(control.path) as hang_ends:
            page = p.wait(
                lambda: next((e for e in p.events() if down.pages(e)), None),
                "a critical page for the hung NVML",
                timeout=hang_ends - time.monotonic() - 1,
            )
            p.wait(
                lambda: p.states.where(alertname="GpuMissing", node=HUNG_NODE),
                "GpuMissing to fire",
                timeout=hang_ends - time.monotonic() - 1,
            )
            time.sleep(2)  # a group_interval: a GpuMissing page would have been sent by now
            # Still hung: what fired came from this hang, not from the kernel's lease break.
            assert time.monotonic() < hang_ends and _source_down(watch.latest[HUNG_NODE])
            released = time.monotonic()
        p.wait(
            lambda: any(
                e.action == "resolve" and e.body["dedup_key"] == page.body["dedup_key"]
                for e in p.events()
            ),
            "the hung NVML's page to resolve",
        )
        assert not [e for e in p.events() if e.at < released and "GpuMissing" in e.alertnames]
        return StoryRun(
            "hung NVML",
            HUNG_EXPECTS,
            p.events(),
            p.pd.received("/watchdog"),
            watch,
            p.states,
            p.started,
            time.monotonic() - p.started,
        )


def test_a_hung_nvml_pages_critical_and_resolves_when_nvml_answers(tmp_path, fake_nvml_library):
    run = run_hung_nvml(tmp_path, fake_nvml_library)
    described = run.described()
    # One incident for the node, critical, naming the hung source; GpuMissing (its GPUs'
    # series are gone) fired too, and Alertmanager folded it into that page (inhibited while
    # NVML hung: run_hung_nvml checks no event named it before the release).
    triggers = [e for e in run.events if e.action == "trigger"]
    assert triggers and {e.key for e in triggers} == {CRITICAL_KEY}, described
    assert {(e.node, e.gpu) for e in run.events} == {(HUNG_NODE, "")}, described
    assert len({e.body["dedup_key"] for e in run.events}) == 1, described
    assert "GpuExporterSourceDown" in triggers[0].alertnames, described
    assert run.states.inhibited_by("GpuExporterSourceDown", alertname="GpuMissing"), sorted(
        run.states.where(node=HUNG_NODE), key=str
    )
    assert run.events[-1].action == "resolve", described
    print("\n" + described)


# --- story 3: the same fault on three nodes ---------------------------------------------------

FLEET_PROBLEM = "GpuTemperatureHigh"


def _fleet_holds(ms: Metrics) -> bool:
    return sum(_hot(ms[n], FLEET_GPU) for n in FLEET_NODES if n in ms) >= len(FLEET_NODES)


FLEET_EXPECTS = (
    Expect(
        "fleet-wide",
        "fleet",
        "",
        FLEET_ALERT,
        "critical",
        _fleet_holds,
        for_of(FLEET_PROBLEM, "critical") + for_of(FLEET_ALERT, "critical") + FLEET_GROUP_WAIT,
        keep_of(FLEET_PROBLEM, "critical") + keep_of(FLEET_ALERT, "critical"),
    ),
)


def run_fleet_wide(tmp: Path) -> StoryRun:
    """Every node's GPU 1 overheats at once; runs until the fleet page has resolved."""
    scenario = f"thermal_throttle:gpu={FLEET_GPU},duration={FLEET_DURATION:g}"
    nodes = [simulated(name, [scenario]) for name in FLEET_NODES]
    (expect,) = FLEET_EXPECTS
    with (
        pipeline(tmp, nodes, group_wait=FLEET_GROUP_WAIT) as p,
        watch_exporters(p.exporters, FLEET_EXPECTS) as watch,
    ):
        p.wait(
            lambda: any(expect.pages(e) and e.problem == FLEET_PROBLEM for e in p.events()),
            "the fleet-wide page",
            timeout=START + FLEET_DURATION,
        )
        p.wait(
            lambda: incidents(p.events(), "trigger") <= incidents(p.events(), "resolve"),
            "every incident to resolve",
            timeout=START + FLEET_DURATION + DEADLINE,
        )
        return StoryRun(
            "fleet-wide",
            FLEET_EXPECTS,
            p.events(),
            p.pd.received("/watchdog"),
            watch,
            p.states,
            p.started,
            time.monotonic() - p.started,
        )


def test_the_same_fault_on_three_nodes_is_one_fleet_page_and_no_per_node_page(tmp_path):
    run = run_fleet_wide(tmp_path)
    events, states, described = run.events, run.states, run.described()
    # One incident: the fleet alert, naming the problem and no node, paged once and resolved.
    fleet = [e for e in events if e.key == CRITICAL_KEY and not e.node]
    assert fleet and {e.body["dedup_key"] for e in fleet} == {fleet[0].body["dedup_key"]}
    assert fleet[0].action == "trigger" and fleet[0].alertnames == {FLEET_ALERT}, described
    assert fleet[0].problem == FLEET_PROBLEM, fleet[0].body
    summary = fleet[0].body["payload"]["summary"]
    assert f"{FLEET_PROBLEM} fleet-wide" in summary, summary
    assert fleet[-1].action == "resolve", described
    # No node paged critical; none named the problem at all: Alertmanager held each node's
    # copies (both tiers) as inhibited by the fleet alert. Other, warning-only symptoms of
    # the same heat (clock slowdown) still reach the low-urgency service per node.
    per_node = [e for e in events if e.node]
    assert not [e for e in per_node if e.key == CRITICAL_KEY], described
    assert not [e for e in per_node if FLEET_PROBLEM in e.alertnames], described
    for node in FLEET_NODES:
        for severity in ("critical", "warning"):
            assert states.inhibited_by(
                FLEET_ALERT, alertname=FLEET_PROBLEM, node=node, severity=severity
            ), (node, severity, sorted(states.where(alertname=FLEET_PROBLEM), key=str))
    print("\n" + described)
