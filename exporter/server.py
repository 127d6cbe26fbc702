"""The HTTP side: /metrics, /healthz, /readyz and a landing page, all served from the snapshot.

No handler here ever calls a source: a scrape costs a dictionary lookup and a write of bytes
rendered by the sampler, whatever the GPU count or the driver's latency.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from exporter import __version__
from exporter.catalog import GPU_UP
from exporter.exposition import CONTENT_TYPES, Format, Snapshot, format_for_accept
from exporter.sampler import Sampler

ReadyCheck = Callable[[], tuple[bool, list[str]]]

SAMPLER_KEY = web.AppKey("sampler", Sampler)
READY_CHECKS_KEY = web.AppKey("ready_checks", list)
TELEMETRY_PATH_KEY = web.AppKey("telemetry_path", str)


def build_app(
    sampler: Sampler, ready_checks: Sequence[ReadyCheck] = (), telemetry_path: str = "/metrics"
) -> web.Application:
    """The exporter's web application; `ready_checks` add to the sampler's own readiness;
    the metrics are served on `telemetry_path` (--web.telemetry-path)."""
    app = web.Application()
    app[SAMPLER_KEY] = sampler
    app[READY_CHECKS_KEY] = [sampler.readiness, *ready_checks]
    app[TELEMETRY_PATH_KEY] = telemetry_path
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if telemetry_path != "/":
        app.router.add_get("/", landing)
    return app


def accepts_gzip(header: str) -> bool:
    """True when Accept-Encoding gives gzip a weight above 0 (RFC 9110: an explicit `gzip` or
    `x-gzip` entry, else `*`; absent, no gzip)."""
    weights: dict[str, float] = {}
    for part in header.split(","):
        coding, *params = (p.strip() for p in part.split(";"))
        coding = coding.lower()
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # a weight we cannot read is no consent
        if coding == "x-gzip":
            coding = "gzip"
        weights[coding] = max(weight, weights.get(coding, weight))
    return weights.get("gzip", weights.get("*", 0.0)) > 0


@functools.lru_cache(maxsize=64)
def negotiate(accept: str, accept_encoding: str) -> tuple[Format, bool]:
    """The variant for these request headers (a scraper sends the same ones every time)."""
    return format_for_accept(accept), accepts_gzip(accept_encoding)


_HEADERS = {
    (fmt, gzipped): {
        "Content-Type": CONTENT_TYPES[fmt],
        "Vary": "Accept, Accept-Encoding",
        **({"Content-Encoding": "gzip"} if gzipped else {}),
    }
    for fmt in Format
    for gzipped in (False, True)
}


async def metrics(request: web.Request) -> web.Response:
    sampler = request.app[SAMPLER_KEY]
    snapshot = sampler.snapshot
    if snapshot is None:
        return web.Response(status=503, text="no snapshot collected yet; retry in a second\n")
    headers = request.headers
    variant = negotiate(headers.get("Accept", ""), headers.get("Accept-Encoding", ""))
    sampler.note_request(variant, request.remote or "")
    if snapshot.has(variant):
        body = snapshot.body(*variant)
    else:  # not rendered ahead for this snapshot: render it once, off the event loop
        body = await asyncio.to_thread(snapshot.body, *variant)
    return web.Response(body=body, headers=_HEADERS[variant])


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.Response(text="ok\n")


def readiness(app: web.Application) -> tuple[bool, list[str]]:
    problems: list[str] = []
    for check in app[READY_CHECKS_KEY]:
        _, reasons = check()
        problems.extend(reasons)
    return not problems, problems


async def readyz(request: web.Request) -> web.Response:
    """200 once a snapshot exists and nothing is stale; 503 listing every reason otherwise."""
    ready, problems = readiness(request.app)
    body = {"ready": ready, "problems": problems}
    return web.json_response(body, status=200 if ready else 503, dumps=_dumps)


def _dumps(obj: object) -> str:
    return json.dumps(obj, indent=2) + "\n"


def lost_gpus(snapshot: Snapshot | None) -> list[tuple[str, str]]:
    """(gpu, uuid) of every GPU the backend reports lost (gpu_up 0) in the snapshot."""
    if snapshot is None:
        return []
    return [
        (labels.get("gpu", "?"), labels.get("uuid", "?"))
        for s in snapshot.samples
        if s.name == GPU_UP.name and s.value == 0
        for labels in (dict(s.labels),)
    ]


async def landing(request: web.Request) -> web.Response:
    sampler = request.app[SAMPLER_KEY]
    snapshot = sampler.snapshot
    ready, problems = readiness(request.app)
    now = time.monotonic()
    rows = []
    for name in sampler.source_names:
        state = snapshot.sources.get(name) if snapshot else None
        if state is None:
            rows.append(f"<tr><td>{html.escape(name)}</td><td>starting</td><td></td><td></td></tr>")
            continue
        age = "never" if state.last_success is None else f"{now - state.last_success:.1f}s ago"
        rows.append(
            "<tr>"
            f"<td>{html.escape(name)}</td>"
            f"<td class={'up' if state.up else 'down'}>{'up' if state.up else 'DOWN'}</td>"
            f"<td>{age} ({state.last_duration * 1000:.1f} ms)</td>"
            f"<td>{html.escape(state.last_error)}</td>"
            "</tr>"
        )
    series = snapshot.series if snapshot else 0
    metrics_path = html.escape(request.app[TELEMETRY_PATH_KEY])
    problem_items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    lost = "".join(
        f"<li class=down>GPU {html.escape(gpu)} ({html.escape(uuid)})</li>"
        for gpu, uuid in lost_gpus(snapshot)
    )
    lost_section = f"<h2>Lost GPUs</h2><ul>{lost}</ul>" if lost else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gpu-inference-exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
.up{{color:#1a7f37}}.down{{color:#cf222e;font-weight:bold}}</style></head>
<body><h1>gpu-inference-exporter {html.escape(__version__)}</h1>
<p><a href="{metrics_path}">{metrics_path}</a> ({series} series)
&middot; <a href="/healthz">/healthz</a>
&middot; <a href="/readyz">/readyz</a> ({"ready" if ready else "not ready"})</p>
<ul>{problem_items}</ul>
{lost_section}
<h2>Sources</h2>
<table><tr><th>source</th><th>state</th><th>last answer</th><th>last error</th></tr>
{"".join(rows)}</table>
<p>Collection interval {sampler.interval:g}s, timeout {sampler.timeout:g}s.</p>
</body></html>
"""
    return web.Response(text=page, content_type="text/html")
