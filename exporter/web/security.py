"""One listener's web security: its configuration file, reloaded when it or a certificate it
names changes, applied to an aiohttp application (basic auth, headers) and to its TLS listener.

Reloading follows exporter-toolkit: a certificate rotated on disk serves the next connection
without a restart; a broken file keeps the previous configuration and says why in the log once
(per distinct problem). Switching between TLS and plain HTTP needs a restart, as there.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import ssl
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from aiohttp import web

from exporter.web.auth import CHALLENGE, BasicAuthenticator, parse_basic_authorization
from exporter.web.config import WebConfig, WebConfigError, load_web_config

log = logging.getLogger(__name__)

#: Seconds between looks at the configuration file and the files it names.
RELOAD_EVERY = 1.0

_Stamp = tuple[tuple[str, int, int, int] | tuple[str], ...]


class ReloadableSSLContext(ssl.SSLContext):
    """The listener's context: each new connection is handed to `current`, which a reload
    replaces (asyncio creates every server-side connection through `wrap_bio`)."""

    current: ssl.SSLContext

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):  # type: ignore[no-untyped-def,override]
        return self.current.wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(self, sock, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        return self.current.wrap_socket(sock, *args, **kwargs)


class WebSecurity:
    """The web configuration of one listener (`flag` names it in log lines)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        flag: str = "--web.config.file",
        reload_every: float = RELOAD_EVERY,
    ) -> None:
        self.path = Path(path) if path else None
        self.flag = flag
        self.reload_every = reload_every
        self._reload_lock = threading.Lock()
        self.config = load_web_config(self.path) if self.path else WebConfig()
        self.authenticator = BasicAuthenticator()
        #: Accepted as `Authorization: Bearer ...` from this process's own clients (the
        #: synthetic load), which know no password; never logged or shown.
        self.internal_token = secrets.token_urlsafe(32)
        self.ssl_context: ReloadableSSLContext | None = None
        if self.config.tls is not None:
            self.ssl_context = ReloadableSSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_context.current = self.config.tls.ssl_context()
        self._stamp = _stamp(self._watched(self.config))
        self._last_problem = ""
        self.reloads = 0

    @property
    def enabled(self) -> bool:
        return self.path is not None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def _watched(self, config: WebConfig) -> list[Path]:
        return [p for p in (self.path, *config.files) if p is not None]

    def reload_if_changed(self) -> bool:
        """Re-read the configuration when a file changed (or the last try failed); True when a
        new configuration took effect."""
        if self.path is None:
            return False
        with self._reload_lock:
            return self._reload_if_changed()

    def _reload_if_changed(self) -> bool:
        assert self.path is not None
        stamp = _stamp(self._watched(self.config))
        if stamp == self._stamp and not self._last_problem:
            return False
        try:
            config = load_web_config(self.path)
            if (config.tls is None) != (self.config.tls is None):
                raise WebConfigError(
                    f"{self.path}: switching between TLS and plain HTTP needs a restart"
                )
            context = config.tls.ssl_context() if config.tls is not None else None
        except WebConfigError as exc:
            self._stamp = stamp
            if str(exc) != self._last_problem:
                log.error("%s: %s; keeping the previous configuration", self.flag, exc)
                self._last_problem = str(exc)
            return False
        self.config = config
        if context is not None and self.ssl_context is not None:
            self.ssl_context.current = context
        self._stamp = _stamp(self._watched(config))
        self._last_problem = ""
        self.reloads += 1
        log.info("%s: reloaded %s (%s)", self.flag, self.path, config.describe())
        return True

    async def watch(self) -> None:
        """Reload on change, forever."""
        while True:
            await asyncio.sleep(self.reload_every)
            try:
                await asyncio.to_thread(self.reload_if_changed)
            except Exception:  # a bug here must not stop the listener
                log.exception("%s: reloading failed", self.flag)

    def install(self, app: web.Application) -> None:
        """Basic auth and headers on every response of `app`, and the reload watcher for as
        long as it runs. Nothing when no configuration file is given."""
        if not self.enabled:
            return
        app.middlewares.insert(0, self._middleware)
        app.on_response_prepare.append(self._add_headers)
        app.cleanup_ctx.append(self._watching)

    @web.middleware
    async def _middleware(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        users = self.config.users
        if users and not await self._authorized(request, users):
            return web.Response(
                status=401, text="401 Unauthorized\n", headers={"WWW-Authenticate": CHALLENGE}
            )
        return await handler(request)

    async def _authorized(self, request: web.Request, users) -> bool:  # type: ignore[no-untyped-def]
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(token.strip().encode(), self.internal_token.encode())
        credentials = parse_basic_authorization(header)
        if credentials is None:
            return False
        return await self.authenticator.check(users, *credentials)

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for name, value in self.config.headers.items():
            response.headers[name] = value

    async def _watching(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.watch(), name=f"watch {self.flag}")
        yield
        task.cancel()


def _stamp(paths: Iterable[Path]) -> _Stamp:
    """What changes when a file is rewritten, replaced or swapped by a symlink (Kubernetes
    secret volumes)."""
    out: list[tuple[str, int, int, int] | tuple[str]] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path),))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for every interface (None, 0.0.0.0, ::)
    and any other address."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere
