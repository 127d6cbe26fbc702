"""One HTTP listener with the bounds every listener here needs (metrics and harness API).

- **Header timeout**: a client gets `header_timeout` seconds from connecting (or from the end
  of its last answer, on a kept-alive connection) to send a whole request head; then the
  connection is closed (aiohttp's keep-alive timer, which runs from the connection's start
  and closes a connection still waiting for its request when it fires).
- **Body timeout**: handlers that read a body bound it with `body_timeout` (see the harness
  API); a body nobody reads (a POST to /metrics) is discarded for at most a second.
- **Connections**: at most `max_connections` open at once; one more is answered 503 (a JSON
  error) and closed, so slow clients cannot take every file descriptor.
- **Shutdown**: `stop()` stops listening, closes idle connections, lets requests in flight
  finish for at most `drain_timeout` seconds, then cancels them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import ssl
from dataclasses import dataclass

from aiohttp import web

from exporter.logs import RateLimitedLog

log = logging.getLogger(__name__)


class _ServerLog:
    """What aiohttp's connection handler logs with: a request it cannot parse (a header too
    long, a bad request line) is one short line, at most once a minute, never a traceback."""

    def __init__(self, name: str) -> None:
        self._lines = RateLimitedLog(logging.getLogger("aiohttp.server"), every=60.0)
        self._name = name

    def exception(self, msg: str, *args: object, exc_info: object = None, **_: object) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else None
        what = f"{type(error).__name__}: {error}" if error else msg % args
        self._lines.log("%s: request refused: %s", self._name, what)

    def debug(self, *args: object, **kwargs: object) -> None:
        logging.getLogger("aiohttp.server").debug(*args, **kwargs)  # type: ignore[arg-type]

    def warning(self, msg: str, *args: object, **_: object) -> None:
        self._lines.log(msg, *args)

    error = warning
    info = debug


@dataclass(frozen=True)
class ListenerLimits:
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 512
    drain_timeout: float = 5.0

    def __post_init__(self) -> None:
        if min(self.header_timeout, self.body_timeout, self.drain_timeout) <= 0:
            raise ValueError("listener timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError("a listener needs at least one connection")


#: Seconds an unread request body is read and discarded before the connection is closed.
LINGER_SECONDS = 1.0


class ListenError(OSError):
    """The listener could not bind; the message names the one address and its flag."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.strerror = reason

    def __str__(self) -> str:
        return f"cannot listen on {self.address}: {self.strerror}"


def _refusal(max_connections: int) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": f"too many connections (this listener keeps at most "
                f"{max_connections}); retry later",
                "type": "overloaded_error",
                "param": None,
                "code": "too_many_connections",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def format_address(host: str | None, port: int) -> str:
    host = host or "0.0.0.0"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Listener:
    """An aiohttp application served on one address within `limits`."""

    def __init__(
        self,
        app: web.Application,
        host: str | None,
        port: int,
        limits: ListenerLimits,
        *,
        flag: str,
        handler_cancellation: bool = False,
        decompress: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits
        self.flag = flag  # the flag that sets the address, named in errors
        self.ssl_context = ssl_context
        self.refused = 0  # connections refused over max_connections
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            handler_cancellation=handler_cancellation,
            shutdown_timeout=limits.drain_timeout,
            keepalive_timeout=limits.header_timeout,
            lingering_time=LINGER_SECONDS,
            auto_decompress=decompress,
            logger=_ServerLog(flag),
        )
        self._started = False

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def start(self) -> None:
        """Bind and serve; ListenError naming the address when it cannot bind."""
        await self._runner.setup()
        self._limit_connections()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            code = exc.errno if exc.errno is not None else errno.EADDRINUSE
            reason = os.strerror(code) if exc.errno is not None else str(exc)
            raise ListenError(f"{self.address} ({self.flag})", reason.lower()) from None
        self._started = True
        # Port 0 on every interface binds IPv4 and IPv6 to different ports: take IPv4's.
        ipv4 = [a for a in self.addresses if ":" not in str(a[0])]
        self.port = (ipv4 or self.addresses or [(None, site.port)])[0][1]

    @property
    def addresses(self) -> list:
        """The socket names the listener is bound to (empty before start)."""
        return list(self._runner.addresses) if self._started else []

    def _limit_connections(self) -> None:
        """Refuse a connection over the limit before aiohttp reads from it."""
        server = self._runner.server
        assert server is not None
        register = server.connection_made
        limit = self.limits.max_connections
        refusal = _refusal(limit)

        def connection_made(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
            if len(server.connections) >= limit:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning(
                        "%s: %d connection(s) refused, over --web.max-connections %d",
                        self.address,
                        self.refused,
                        limit,
                    )
                transport.pause_reading()
                transport.write(refusal)
                # Closed on the loop's next turn, after aiohttp's handler task has started:
                # closed now, the loop would report the close first and the task would start
                # on a handler already torn down.
                asyncio.get_running_loop().call_soon(transport.close)
                return
            register(handler, transport)

        server.connection_made = connection_made  # type: ignore[method-assign]

    async def stop(self) -> None:
        """Stop listening; requests in flight get at most `drain_timeout` seconds."""
        if self._started:
            self._started = False
            await self._runner.cleanup()
