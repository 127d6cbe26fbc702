"""A listener with --web.config.file, in process: basic auth, headers, TLS and client
certificates, reloading on change (certificate rotation) and keeping the old configuration
when the new one is broken."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import logging
import os
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from exporter.web.auth import BasicAuthenticator, parse_basic_authorization
from exporter.web.config import WebConfigError
from exporter.web.security import WebSecurity, is_loopback
from tests.conftest import free_port
from tests.tls import Authority, bcrypt_hash, fingerprint, write_web_config

PASSWORD = "s3cret-Pa55"


@dataclass
class Certs:
    dir: Path
    ca: Authority
    other_ca: Authority

    def client_context(self, client_of: Authority | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca.pair.cert)
        if client_of is not None:
            pair = client_of.issue(f"client-of-{client_of.name}", server=False)
            ctx.load_cert_chain(pair.cert, pair.key)
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = Authority.create(d, "ca")
    ca.issue("server", server=True)
    return Certs(d, ca, Authority.create(d, "other-ca"))


def tls_config(certs: Certs, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {
        "tls_server_config": {
            "cert_file": str(certs.dir / "server.crt"),
            "key_file": str(certs.dir / "server.key"),
            **extra,
        }
    }


@dataclass
class Served:
    port: int
    security: WebSecurity

    def get(
        self,
        path: str = "/metrics",
        *,
        auth: tuple[str, str] | None = None,
        context: ssl.SSLContext | None = None,
        header: str | None = None,
    ) -> tuple[int, dict[str, str], str]:
        if self.security.ssl_context is not None:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        headers = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if header is not None:
            headers["Authorization"] = header
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read().decode()
        finally:
            conn.close()

    def peer_fingerprint(self, context: ssl.SSLContext) -> bytes:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=context)
        try:
            conn.connect()
            der = conn.sock.getpeercert(binary_form=True)
        finally:
            conn.close()
        return hashlib.sha256(der).digest()


async def _hello(request: web.Request) -> web.StreamResponse:
    if request.path == "/stream":  # headers must reach streamed answers too (the harness's SSE)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        return response
    return web.Response(text="metric 1\n")


@contextmanager
def serving(config_path: Path | None, reload_every: float = 0.05) -> Iterator[Served]:
    """An app behind WebSecurity on a free port, its event loop on a thread."""
    security = WebSecurity(config_path, reload_every=reload_every)
    app = web.Application()
    app.router.add_get("/metrics", _hello)
    app.router.add_get("/stream", _hello)
    security.install(app)
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=security.ssl_context)
        await site.start()
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield Served(port, security)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_basic_auth_answers_401_with_a_challenge_and_checks_bcrypt_once(tmp_path):
    path = write_web_config(
        tmp_path / "web.yml",
        {
            "basic_auth_users": {"prom": bcrypt_hash(PASSWORD)},
            "http_server_config": {"headers": {"X-Content-Type-Options": "nosniff"}},
        },
    )
    with serving(path) as s:
        for auth, header in [
            (None, None),
            (("prom", "wrong"), None),
            (("nobody", PASSWORD), None),
            (("prom", PASSWORD + "x"), None),
            (None, "Basic !!!not-base64"),
            (None, "Bearer guess"),
        ]:
            status, headers, _ = s.get(auth=auth, header=header)
            assert status == 401, (auth, header)
            assert headers["WWW-Authenticate"].startswith("Basic realm=")
            assert headers["X-Content-Type-Options"] == "nosniff"  # on refusals too
        checks_before = s.security.authenticator.bcrypt_checks
        for _ in range(5):
            status, headers, body = s.get(auth=("prom", PASSWORD))
            assert (status, body) == (200, "metric 1\n")
            assert headers["X-Content-Type-Options"] == "nosniff"
        # five scrapes with the same credentials: bcrypt ran once for them
        assert s.security.authenticator.bcrypt_checks == checks_before + 1
        status, headers, body = s.get("/stream", auth=("prom", PASSWORD))
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        # the process's own client (the synthetic load) gets in with its token
        assert s.get(header=f"Bearer {s.security.internal_token}")[0] == 200


def test_without_a_config_file_nothing_changes(tmp_path):
    with serving(None) as s:
        status, headers, _ = s.get()
        assert status == 200 and "WWW-Authenticate" not in headers
        assert s.get(header="Bearer anything")[0] == 200


def test_tls_with_client_certificates(certs, tmp_path):
    users = {"basic_auth_users": {"prom": bcrypt_hash(PASSWORD)}}
    config = tls_config(
        certs, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(certs.ca.pair.cert)
    )
    path = write_web_config(tmp_path / "web.yml", {**config, **users})
    with serving(path) as s:
        good = certs.client_context(certs.ca)
        assert s.get(auth=("prom", PASSWORD), context=good)[0] == 200
        assert s.get(auth=("prom", "nope"), context=good)[0] == 401
        # no client certificate, or one from another CA: the handshake fails
        for context in (certs.client_context(), certs.client_context(certs.other_ca)):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                s.get(auth=("prom", PASSWORD), context=context)
        # plain HTTP on the TLS port gets no answer
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.request("GET", "/metrics")
            conn.getresponse()
        conn.close()


def test_min_version_is_enforced(certs, tmp_path):
    path = write_web_config(tmp_path / "web.yml", tls_config(certs, min_version="TLS13"))
    with serving(path) as s:
        old_client = certs.client_context()
        old_client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            s.get(context=old_client)
        assert s.get(context=certs.client_context())[0] == 200


def test_a_rotated_certificate_serves_the_next_connection(certs, tmp_path, caplog):
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(certs.dir / name, live / name)
    path = write_web_config(
        tmp_path / "web.yml",
        {"tls_server_config": {"cert_file": "live/server.crt", "key_file": "live/server.key"}},
    )
    caplog.set_level(logging.INFO, logger="exporter.web")
    with serving(path) as s:
        client = certs.client_context()
        assert s.peer_fingerprint(client) == fingerprint(live / "server.crt")
        rotated = certs.ca.issue("server-rotated", server=True)
        # as cert-manager does: new files, swapped in
        shutil.copy(rotated.key, live / "server.key.new")
        shutil.copy(rotated.cert, live / "server.crt.new")
        os.replace(live / "server.key.new", live / "server.key")
        os.replace(live / "server.crt.new", live / "server.crt")
        wait_until(lambda: s.security.reloads >= 1)
        assert s.peer_fingerprint(client) == fingerprint(rotated.cert)
        assert "reloaded" in caplog.text


def test_a_broken_file_on_reload_keeps_the_old_configuration_and_says_why_once(tmp_path, caplog):
    path = write_web_config(
        tmp_path / "web.yml", {"basic_auth_users": {"prom": bcrypt_hash(PASSWORD)}}
    )
    caplog.set_level(logging.INFO, logger="exporter.web")
    with serving(path) as s:
        assert s.get(auth=("prom", PASSWORD))[0] == 200
        path.write_text("basic_auth_users:\n  prom: hunter2\n")
        wait_until(lambda: "keeping the previous configuration" in caplog.text)
        assert s.get(auth=("prom", PASSWORD))[0] == 200  # the old users still hold
        assert s.get(auth=("prom", "hunter2"))[0] == 401
        time.sleep(0.3)  # several more looks at the same broken file: logged once
        errors = [r for r in caplog.records if "keeping the previous" in r.getMessage()]
        assert len(errors) == 1 and "hunter2" not in caplog.text
        # fixed: the new user table takes over
        write_web_config(path, {"basic_auth_users": {"ops": bcrypt_hash("other")}})
        wait_until(lambda: s.security.reloads >= 1)
        assert s.get(auth=("prom", PASSWORD))[0] == 401
        assert s.get(auth=("ops", "other"))[0] == 200
    assert PASSWORD not in caplog.text


def test_switching_to_plain_http_needs_a_restart(certs, tmp_path, caplog):
    path = write_web_config(tmp_path / "web.yml", tls_config(certs))
    with serving(path) as s:
        write_web_config(path, {})
        wait_until(lambda: "needs a restart" in caplog.text)
        assert s.get(context=certs.client_context())[0] == 200


def test_a_broken_file_at_start_raises_one_line(tmp_path):
    path = tmp_path / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n")
    with pytest.raises(WebConfigError) as err:
        WebSecurity(path)
    assert "cannot load cert_file" in str(err.value) and "\n" not in str(err.value)


def test_authenticator_cache_is_keyed_by_the_stored_hash_and_bounded():
    async def scenario() -> tuple[list[bool], int, int]:
        auth = BasicAuthenticator(cache_size=4)
        old = {"u": bcrypt_hash("pw").encode()}
        new = {"u": bcrypt_hash("pw2").encode()}
        results = [
            await auth.check(old, "u", b"pw"),
            await auth.check(old, "u", b"pw"),  # cached
            await auth.check(new, "u", b"pw"),  # a new hash: not the old answer
            await auth.check(new, "u", b"pw2"),
            await auth.check(old, "ghost", b"pw"),  # unknown user: a decoy check, refused
            await auth.check(old, "u", b"x" * 100),  # over bcrypt's 72 bytes: refused
        ]
        checks = auth.bcrypt_checks
        for i in range(10):
            await auth.check(old, "u", str(i).encode())
        return results, checks, len(auth._cache)

    results, checks, cached = asyncio.run(scenario())
    assert results == [True, True, False, True, False, False]
    assert checks == 5
    assert cached == 4


def test_parse_basic_authorization():
    token = base64.b64encode(b"al:ice:p:w").decode()
    assert parse_basic_authorization(f"Basic {token}") == ("al", b"ice:p:w")
    assert parse_basic_authorization(f"basic  {token}") == ("al", b"ice:p:w")
    assert parse_basic_authorization("Basic bm9jb2xvbg==") is None  # "nocolon"
    assert parse_basic_authorization("Digest abc") is None
    assert parse_basic_authorization(None) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        (None, False),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("node.example", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
