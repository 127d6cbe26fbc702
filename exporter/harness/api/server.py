"""The harness's own listener (`--harness.listen-address`) and, when asked, the synthetic load
that drives it, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from exporter.harness.api.admission import AdmissionLimits
from exporter.harness.api.routes import build_api_app
from exporter.harness.engine import Engine
from exporter.harness.loadgen import LoadGenerator, LoadProfile
from exporter.listener import Listener, ListenerLimits, ListenError
from exporter.web.security import WebSecurity, is_loopback

__all__ = ["ApiServer", "ApiSettings", "ListenError"]

log = logging.getLogger(__name__)

#: Seconds between the load generator's summary lines in the log.
LOAD_LOG_EVERY = 60.0


@dataclass(frozen=True)
class ApiSettings:
    host: str | None  # None: every interface
    port: int  # 0: any free port (tests)
    limits: AdmissionLimits
    load: LoadProfile | None = None
    listener: ListenerLimits = field(default_factory=ListenerLimits)
    security: WebSecurity | None = None  # --harness.web.config.file


class ApiServer:
    """Serves an engine's API on its own port; runs the load generator against it."""

    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.app = build_api_app(
            engine, settings.limits, body_timeout=settings.listener.body_timeout
        )
        if settings.security is not None:
            settings.security.install(self.app)
        self.load: LoadGenerator | None = None
        # handler_cancellation: a client that disconnects cancels its handler at once, which
        # aborts its request and frees its KV blocks. On stop, requests in flight get the
        # drain timeout to finish, then their handlers are cancelled (blocks freed likewise).
        self.listener = Listener(
            self.app,
            settings.host,
            settings.port,
            settings.listener,
            flag="--harness.listen-address",
            handler_cancellation=True,
            decompress=False,  # the API reads encodings itself (api/body.py)
            ssl_context=settings.security.ssl_context if settings.security else None,
        )
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
        """Listen (ListenError naming the address when it cannot), then start the load, if
        any: it waits for the engine to be ready."""
        await self.listener.start()
        self.port = self.listener.port
        self._log_listening(self.listener.addresses)
        security = self.settings.security
        if self.settings.load is not None:
            headers = {}
            if security is not None and security.enabled:
                headers["Authorization"] = f"Bearer {security.internal_token}"
            self.load = LoadGenerator(
                self.url,
                self.settings.load,
                log_every=LOAD_LOG_EVERY,
                headers=headers,
                verify_tls=False,
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

    async def stop_load(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
            self._load_task = None

    async def stop(self) -> None:
        """Stop the load, then the listener: no new connections; requests in flight get the
        drain timeout to finish, then are cancelled (their KV blocks freed)."""
        await self.stop_load()
        await self.listener.stop()


def _address(sockname: object) -> str:
    """host:port (or [host]:port) from a socket name tuple."""
    host, port = sockname[0], sockname[1]  # type: ignore[index]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
