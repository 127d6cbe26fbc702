"""Server-sent events as OpenAI streams completions: `data: {json}` events, then
`data: [DONE]`."""

from __future__ import annotations

import json

from aiohttp import web

DONE = b"data: [DONE]\n\n"

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # a proxy in front must not hold the events back
}


def event(payload: object) -> bytes:
    """One event carrying a JSON object."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def stream_response() -> web.StreamResponse:
    """A 200 event stream, to `prepare` (send its headers) and `write` events to."""
    return web.StreamResponse(status=200, headers=HEADERS)
