"""End to end on 127.0.0.1: simulated fleet with faults → Prometheus (the generated rules, `for`
durations and windows scaled down to seconds) → Alertmanager (the generated routing) → a local
HTTP receiver standing in for PagerDuty's Events API v2.

Prints a table of the measured latencies (run with `-s` to see it): from the fault (the
scenario start, and the moment the metric crossed the critical threshold) to the page, and from
the recovery to the resolve event. Nothing here asserts on a duration: deadlines only bound
the waits.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerts.alertmanager import AlertmanagerOptions, render_alertmanager
from alerts.definitions import all_alerts
from alerts.rules import render_rules
from alerts.thresholds import DEFAULTS
from tests.conftest import free_port, parse_metrics, run_exporter, series
from tests.servers import binary, http_get, run_prometheus, run_server, scrape_config

pytestmark = pytest.mark.e2e

#: Every `for`, window and horizon of the rules, scaled: 5m → 5s, 30s → 500ms, 1d → 24m.
SCALE = 1 / 60
START = 8.0  # seconds after the exporter started: Prometheus has scraped a baseline by then
DURATION = 18.0
SCENARIOS = {
    "thermal_throttle": "thermal_throttle:gpu=0",
    "memory_leak": "memory_leak:gpu=2,ramp=2",
    "fragmentation": "fragmentation:gpu=3,ramp=4",
    "gpu_lost": "gpu_lost:gpu=4",
}
FAULTY = {"0", "2", "3", "4"}
HEALTHY = {"1", "5", "6", "7"}
CRITICAL_KEY = "critical-routing-key-e2e"
WARNING_KEY = "warning-routing-key-e2e"
DEADLINE = 60.0


# --- the PagerDuty stand-in ---------------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    path: str
    body: dict[str, Any]


@dataclass
class Receiver:
    """Records every POST; answers like PagerDuty's Events API v2 (202, status success)."""

    url: str
    events: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(Received(time.monotonic(), path, body))

    def received(self, path: str) -> list[Received]:
        with self.lock:
            return [e for e in self.events if e.path == path]


@contextmanager
def pagerduty_receiver() -> Iterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            receiver.record(self.path, body)
            answer = {"status": "success", "message": "Event processed"}
            if "dedup_key" in body:
                answer["dedup_key"] = body["dedup_key"]
            data = json.dumps(answer).encode()
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- servers ------------------------------------------------------------------------------------


@contextmanager
def alertmanager(tmp: Path, receiver: Receiver) -> Iterator[str]:
    port = free_port()
    (tmp / "critical.key").write_text(CRITICAL_KEY + "\n")
    (tmp / "warning.key").write_text(WARNING_KEY + "\n")
    options = AlertmanagerOptions(
        pagerduty_url=receiver.url + "/v2/enqueue",
        critical_routing_key_file=str(tmp / "critical.key"),
        warning_routing_key_file=str(tmp / "warning.key"),
        watchdog_url=receiver.url + "/watchdog",
        group_wait="1s",
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
def prometheus(tmp: Path, exporter_url: str, alertmanager_url: str) -> Iterator[str]:
    rules = tmp / "rules.yml"
    rules.write_text(render_rules(DEFAULTS.scaled(SCALE)))
    with run_prometheus(
        tmp,
        [scrape_config(DEFAULTS.exporter_job, [exporter_url])],
        rule_files=[rules],
        alertmanager_url=alertmanager_url,
        # Alerts evaluated before Alertmanager is discovered are dropped, and resent only
        # after this delay (1m by default): the always-firing Watchdog would arrive late.
        flags=["--rules.alert.resend-delay=1s"],
    ) as prom:
        yield prom.url


# --- watching the exporter ----------------------------------------------------------------------

#: (gpu, critical alert) → the condition on the exporter's metrics that makes it fire.
CRITICAL_CONDITIONS: dict[tuple[str, str], Callable[[dict], bool]] = {
    ("0", "GpuTemperatureHigh"): lambda m: (
        _one(m, "gpu_temperature_celsius", "0", sensor="gpu") > 90
    ),
    ("2", "GpuMemoryHigh"): lambda m: _ratio(m, "2") > 0.9,
    ("3", "TorchCudaFragmentationHigh"): lambda m: (
        _one(m, "torch_cuda_fragmentation_ratio", "3") > 0.5
    ),
    ("3", "GpuMemoryHigh"): lambda m: _ratio(m, "3") > 0.9,
    ("4", "GpuLost"): lambda m: _one(m, "gpu_up", "4") == 0,
}


#: The scaled `for` of each critical alert above, in seconds.
CRITICAL_FOR = {
    a.name: tier.for_.seconds
    for a in all_alerts(DEFAULTS.scaled(SCALE))
    for tier in a.tiers
    if tier.severity == "critical"
}


def _one(m: dict, name: str, gpu: str, **labels: str) -> float:
    found = series(m, name, gpu=gpu, **labels)
    return next(iter(found.values())) if found else float("nan")


def _ratio(m: dict, gpu: str) -> float:
    return _one(m, "gpu_memory_used_bytes", gpu) / _one(m, "gpu_memory_total_bytes", gpu)


@dataclass
class Watch:
    """When each critical condition first held, and when it stopped holding afterwards."""

    began: dict[tuple[str, str], float] = field(default_factory=dict)
    ended: dict[tuple[str, str], float] = field(default_factory=dict)


@contextmanager
def watch_exporter(url: str, interval: float = 0.25) -> Iterator[Watch]:
    watch = Watch()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            try:
                _, body = http_get(url + "/metrics")
            except OSError:
                continue
            now = time.monotonic()
            m = parse_metrics(body)
            for key, condition in CRITICAL_CONDITIONS.items():
                holds = condition(m)
                if holds and key not in watch.began:
                    watch.began[key] = now
                elif not holds and key in watch.began and key not in watch.ended:
                    watch.ended[key] = now

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join(timeout=5)


# --- reading the events -------------------------------------------------------------------------


def _alertnames(event: Received) -> set[str]:
    return set(event.body["payload"]["custom_details"]["alertnames"].split())


def _gpu(event: Received) -> str:
    return event.body["payload"]["custom_details"]["gpu"]


def _wait(
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


def _describe(events: list[Received], since: float) -> str:
    return "\n".join(
        f"{e.at - since:6.1f} {e.body['event_action']:8} {e.body['routing_key'][:8]} "
        f"gpu={_gpu(e)} {sorted(_alertnames(e))}"
        for e in events
    )


@dataclass
class AlertStates:
    """Every (alertname, gpu, severity, state) Alertmanager reported, and the inhibited ones."""

    seen: set[tuple[str, str, str, str]] = field(default_factory=set)

    def inhibited(self, alertname: str, gpu: str, severity: str | None = None) -> bool:
        return any(
            (a, g, state) == (alertname, gpu, "inhibited") and severity in (None, sev)
            for a, g, sev, state in self.seen
        )


@contextmanager
def watch_alertmanager(url: str, interval: float = 0.5) -> Iterator[AlertStates]:
    states = AlertStates()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            try:
                status, body = http_get(url + "/api/v2/alerts")
            except OSError:
                continue
            if status != 200:
                continue
            for a in json.loads(body):
                labels, st = a["labels"], a["status"]
                state = "inhibited" if st["inhibitedBy"] else st["state"]
                states.seen.add(
                    (labels["alertname"], labels.get("gpu", ""), labels["severity"], state)
                )

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield states
    finally:
        stop.set()
        thread.join(timeout=5)


@dataclass
class FaultRun:
    """What one run of the faulty fleet through the whole pipeline produced."""

    events: list[Received]  # PagerDuty events, in arrival order
    watchdog: list[Received]
    watch: Watch
    states: AlertStates
    instance: str  # the exporter's host:port, Prometheus's instance label
    started: float
    elapsed: float


def run_faults(tmp: Path) -> FaultRun:
    """Run the faulty fleet, Prometheus and Alertmanager until every faulty GPU has paged and
    every incident has resolved; stop every server."""
    started = time.monotonic()
    exporter_args = ["--backend=simulated", "--collect.interval=0.5"]
    exporter_args += [
        f"--simulate.scenario={spec},start={START:g},duration={DURATION:g}"
        for spec in SCENARIOS.values()
    ]
    enqueue = "/v2/enqueue"
    with (
        pagerduty_receiver() as pd,
        alertmanager(tmp, pd) as am_url,
        run_exporter(*exporter_args) as exporter,
        prometheus(tmp, exporter.url, am_url),
        watch_exporter(exporter.url) as watch,
        watch_alertmanager(am_url) as states,
    ):

        def incidents(action: str) -> set[tuple[str, str]]:
            return {
                (e.body["routing_key"], e.body["dedup_key"])
                for e in pd.received(enqueue)
                if e.body["event_action"] == action
            }

        def paged(gpu: str, alert: str) -> bool:
            return any(
                e.body["routing_key"] == CRITICAL_KEY and _gpu(e) == gpu and alert in _alertnames(e)
                for e in pd.received(enqueue)
            )

        # Every faulty GPU pages, then every incident opened resolves after the scenarios end.
        _wait(
            lambda: all(paged(gpu, alert) for gpu, alert in CRITICAL_CONDITIONS),
            "a critical page for every faulty GPU",
            context=lambda: _describe(pd.received(enqueue), started),
        )
        _wait(
            lambda: (
                ("4", "GpuLost") in watch.ended and incidents("trigger") <= incidents("resolve")
            ),
            "a resolve event for every incident opened",
            timeout=START + DURATION + DEADLINE,
            context=lambda: _describe(pd.received(enqueue), started),
        )
        return FaultRun(
            events=pd.received(enqueue),
            watchdog=pd.received("/watchdog"),
            watch=watch,
            states=states,
            instance=urllib.parse.urlsplit(exporter.url).netloc,
            started=started,
            elapsed=time.monotonic() - started,
        )


def test_faults_page_once_with_the_gpu_and_resolve_when_they_end(tmp_path):
    run = run_faults(tmp_path)
    events, watch, states = run.events, run.watch, run.states
    described = _describe(events, run.started)

    def triggers(gpu: str, key: str) -> list[Received]:
        return [
            e
            for e in events
            if e.body["event_action"] == "trigger"
            and e.body["routing_key"] == key
            and _gpu(e) == gpu
        ]

    # The payload: severity from the label, the GPU and the target in the details, the links.
    for e in events:
        body, payload = e.body, e.body["payload"]
        assert body["routing_key"] in (CRITICAL_KEY, WARNING_KEY), body
        expected = "critical" if body["routing_key"] == CRITICAL_KEY else "warning"
        assert payload["severity"] == expected, body
        assert len(body["dedup_key"]) == 64 and int(body["dedup_key"], 16) >= 0, body
        details = payload["custom_details"]
        assert details["instance"] == run.instance, body
        assert payload["source"] == details["instance"], body  # no node label here
        assert details["gpu"] in FAULTY, f"a healthy GPU paged:\n{described}"
        if body["event_action"] == "trigger":
            assert payload["component"] == f"gpu{details['gpu']}", body
            assert details["uuid"].startswith("GPU-"), body
            hrefs = [link["href"] for link in body["links"]]
            assert hrefs[0].endswith(".md") and "/alerts/runbooks/" in hrefs[0], hrefs
            assert "/d/" in hrefs[1] and f"var-gpu={details['gpu']}" in hrefs[1], hrefs
    # Both tiers fired and only the critical one paged: Alertmanager held the warning as
    # inhibited, and no warning event named that alert on that GPU while the critical
    # condition held. (Once the critical condition clears, a warning condition that still
    # holds, like a GPU cooling from 92 to 85 °C, is delivered to the low-urgency service.)
    for gpu, alert in [
        ("0", "GpuTemperatureHigh"),
        ("2", "GpuMemoryHigh"),
        ("3", "GpuMemoryHigh"),
        ("3", "TorchCudaFragmentationHigh"),
    ]:
        assert states.inhibited(alert, gpu, "warning"), (gpu, alert, sorted(states.seen))
        critical_end = watch.ended[(gpu, alert)]
        named = [
            e for e in triggers(gpu, WARNING_KEY) if alert in _alertnames(e) and e.at < critical_end
        ]
        assert not named, f"{alert} on GPU {gpu} reached the warning service:\n{described}"
    # GpuLost silenced the other alerts of the lost GPU: Xid 79 (no `for`) may page first, in
    # the same incident; once GpuLost fires, the incident lists GpuLost alone.
    assert states.inhibited("GpuXidError", "4"), sorted(states.seen)
    lost = triggers("4", CRITICAL_KEY)
    assert lost and _alertnames(lost[-1]) == {"GpuLost"}, described
    assert all(_alertnames(e) <= {"GpuLost", "GpuXidError"} for e in lost), described
    # One sick GPU is one incident per service: one dedup_key per (GPU, routing key).
    for gpu in FAULTY:
        for key in (CRITICAL_KEY, WARNING_KEY):
            keys = {
                e.body["dedup_key"]
                for e in events
                if _gpu(e) == gpu and e.body["routing_key"] == key
            }
            assert len(keys) <= 1, (gpu, key, described)
    # The Watchdog reached its own receiver.
    assert run.watchdog and run.watchdog[0].body["commonLabels"]["alertname"] == "Watchdog"

    print("\n" + described)
    print(latency_table([run]))


LATENCY_COLUMNS = (
    "scenario start → page",
    "threshold crossed → page",
    "same, less the `for`",
    "scenario end → resolve",
    "back under threshold → resolve",
)


def latencies(run: FaultRun) -> dict[tuple[str, str], tuple[float, ...]]:
    """(GPU, critical alert) → the LATENCY_COLUMNS, in seconds."""
    watch = run.watch
    scenario_start = watch.began[("4", "GpuLost")]  # gpu_lost flips gpu_up at the shared start
    scenario_end = watch.ended[("4", "GpuLost")]
    out = {}
    for (gpu, alert), began in sorted(watch.began.items()):
        critical = [
            e for e in run.events if e.body["routing_key"] == CRITICAL_KEY and _gpu(e) == gpu
        ]
        page = min(
            e.at
            for e in critical
            if e.body["event_action"] == "trigger" and alert in _alertnames(e)
        )
        resolve = min(e.at for e in critical if e.body["event_action"] == "resolve")
        out[gpu, alert] = (
            page - scenario_start,
            page - began,
            page - began - CRITICAL_FOR[alert],
            resolve - scenario_end,
            resolve - watch.ended[gpu, alert],
        )
    return out


def latency_table(runs: list[FaultRun]) -> str:
    """Markdown table of the latencies: the median over `runs` (and the max when several)."""
    import statistics

    per_run = [latencies(r) for r in runs]
    rows = []
    for key in per_run[0]:
        cells = []
        for i in range(len(LATENCY_COLUMNS)):
            values = [lat[key][i] for lat in per_run]
            cell = f"{statistics.median(values):.1f}"
            cells.append(cell + (f" (max {max(values):.1f})" if len(values) > 1 else ""))
        gpu, alert = key
        rows.append(f"| {gpu} | {alert} | {CRITICAL_FOR[alert]:g} | " + " | ".join(cells) + " |")
    title = (
        f"End-to-end latency in seconds, median of {len(runs)} run(s); rules scaled by "
        f"{SCALE:.4g} (`for` in the third column), scrape and evaluation every 1 s, "
        "group_wait and group_interval 1 s."
    )
    header = "| GPU | critical alert | `for` | " + " | ".join(LATENCY_COLUMNS) + " |"
    rule = "|---" * (3 + len(LATENCY_COLUMNS)) + "|"
    return "\n".join([title, header, rule, *rows])
