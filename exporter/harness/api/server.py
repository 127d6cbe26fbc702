"""The harness's own listener (`--harness.listen-address`) and, when asked, the synthetic load
that drives it, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiohttp import web

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.api.routes import build_api_app
from exporter.harness.engine import Engine
from exporter.harness.loadgen import LoadGenerator, LoadProfile
from exporter.web.security import WebSecurity, is_loopback

log = logging.getLogger(__name__)

#: Seconds between the load generator's summary lines in the log.
LOAD_LOG_EVERY = 60.0
#: How long stopping waits for requests in flight when they have no deadline.
DEFAULT_DRAIN_SECONDS = 5.0


class ListenError(OSError):
    """The harness listener could not bind; `address` names it and its flag."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address
        self.strerror = reason


@dataclass(frozen=True)
class ApiSettings:
    host: str | None  # None: every interface
    port: int  # 0: any free port (tests)
    limits: AdmissionLimits
    load: LoadProfile | None = None
    security: WebSecurity | None = None  # --harness.web.config.file


class ApiServer:
    """Serves an engine's API on its own port; runs the load generator against it."""

    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.app = build_api_app(engine, settings.limits)
        if settings.security is not None:
            settings.security.install(self.app)
        self.load: LoadGenerator | None = None
        self._runner: web.AppRunner | None = None
        self._load_task: asyncio.Task[object] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the API (the wildcard host: loopback)."""
        host = self.settings.host or "127.0.0.1"
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        host = f"[{host}]" if ":" in host else host
        scheme = self.settings.security.scheme if self.settings.security else "http"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (ListenError when the address is taken), then start the load, if any."""
        settings = self.settings
        # handler_cancellation: a client that disconnects cancels its handler at once, which
        # aborts its request and frees its KV blocks. On stop, requests in flight get until
        # their deadline to finish (the engine enforces it), then their handlers are cancelled.
        drain = (settings.limits.request_timeout or DEFAULT_DRAIN_SECONDS) + 1.0
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=drain
        )
        await runner.setup()
        self._runner = runner
        security = settings.security
        site = web.TCPSite(
            runner, settings.host, settings.port, ssl_context=security and security.ssl_context
        )
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            where = f"{settings.host or '0.0.0.0'}:{settings.port} (--harness.listen-address)"
            raise ListenError(where, exc.strerror or str(exc)) from None
        # Port 0 on every interface binds IPv4 and IPv6 to different ports: `url` takes IPv4's.
        ipv4 = [a for a in runner.addresses if ":" not in str(a[0])]
        addresses = ipv4 or runner.addresses
        self.port = addresses[0][1] if addresses else settings.port
        self._log_listening(runner.addresses)
        if settings.load is not None:
            headers = {}
            if security is not None and security.enabled:
                headers["Authorization"] = f"Bearer {security.internal_token}"
            self.load = LoadGenerator(
                self.url, settings.load, log_every=LOAD_LOG_EVERY, headers=headers, verify_tls=False
            )
            self._load_task = asyncio.create_task(self._run_load(), name="harness-load")

    def _log_listening(self, addresses: list[object]) -> None:
        """Where it listens, as bound; loudly when beyond loopback with no web config."""
        security = self.settings.security
        scheme = security.scheme if security else "http"
        bound = [_address(a) for a in addresses] or [f"{self.settings.host}:{self.port}"]
        for where in bound:
            log.info("inference harness API on %s://%s/v1/completions", scheme, where)
        if is_loopback(self.settings.host):
            return
        if security is None or not security.enabled:
            log.warning(
                "the inference harness API listens on %s, beyond loopback, with no "
                "--harness.web.config.file: anyone who reaches it can run completions on this "
                "GPU; bind it to 127.0.0.1 (--harness.listen-address) or give it TLS and "
                "basic auth",
                ", ".join(bound),
            )

    async def _run_load(self) -> None:
        assert self.load is not None and self.settings.load is not None
        try:
            await self.engine.wait_ready()
        except Exception as exc:  # the engine says why in the log and on /readyz
            log.warning("synthetic load not started: %s", exc)
            return
        profile = self.settings.load
        log.info(
            "synthetic load: %g requests/s, prompts %s tokens, outputs %s tokens",
            profile.rate,
            profile.prompt_tokens,
            profile.max_tokens,
        )
        await self.load.run()

    async def stop(self) -> None:
        """Stop the load, then the listener: no new connections; requests in flight end by
        their deadline (or are cancelled after DEFAULT_DRAIN_SECONDS without one)."""
        if self._load_task is not None:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
            self._load_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _address(sockname: object) -> str:
    """host:port (or [host]:port) from a socket name tuple."""
    host, port = sockname[0], sockname[1]  # type: ignore[index]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
