"""Logging set-up: human text or one JSON object per line (for log pipelines)."""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Route every logger to stderr in the chosen format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp logs every request at info; keep access logs off unless debugging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class RateLimitedLog:
    """At most one short warning line per `every` seconds (what a client can trigger at will
    must not flood the log); the next line says how many were held back meanwhile."""

    MAX_CHARS = 300

    def __init__(self, logger: logging.Logger, every: float = 60.0, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.logger = logger
        self.every = every
        self._clock = clock
        self._next = float("-inf")
        self.held = 0

    def log(self, msg: str, *args: object) -> bool:
        """Log one line (True), or count it as held back (False)."""
        now = self._clock()
        if now < self._next:
            self.held += 1
            return False
        text = (msg % args if args else msg).replace("\n", " ")
        if len(text) > self.MAX_CHARS:
            text = text[: self.MAX_CHARS] + "…"
        if self.held:
            text += f" ({self.held} more like it not logged in the last {self.every:g}s)"
        self.logger.warning("%s", text)
        self._next, self.held = now + self.every, 0
        return True
