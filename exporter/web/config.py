"""The web configuration file (`--web.config.file`), in the exporter-toolkit format that every
Prometheus exporter reads:

```yaml
tls_server_config:
  cert_file: server.crt          # relative paths: from the config file's directory
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
  client_ca_file: clients-ca.crt
  min_version: TLS12             # TLS10..TLS13; default TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # Go's names; TLS 1.2 and older
  prefer_server_cipher_suites: true
http_server_config:
  headers: {X-Content-Type-Options: nosniff}
basic_auth_users:
  prometheus: $2b$10$...         # bcrypt hashes only
```

Parsing is strict, as exporter-toolkit's: an unknown key is an error, so a misspelt
`basic_auth_user` cannot silently leave a listener open. Every error is one line that names the
file and the key, never a password hash or a key.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class WebConfigError(ValueError):
    """The web configuration cannot be used; the message is one line, free of secrets."""


#: exporter-toolkit's names of the TLS versions.
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

#: Go's cipher suite names (what exporter-toolkit accepts) → OpenSSL's. Only TLS 1.2 and older
#: suites are configurable, in Go as in OpenSSL's cipher list; TLS 1.3's are always on.
CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")

#: client_auth_type → what OpenSSL checks. Go's RequestClientCert and RequireAnyClientCert ask
#: for a certificate without verifying it, which Python's ssl module cannot do: refused.
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")

#: Headers http_server_config may set, with their allowed values (None: any), as in
#: exporter-toolkit, so one file means the same thing to every exporter on a node.
EXTRA_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

_BCRYPT_HASH = re.compile(r"^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$")

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "prefer_server_cipher_suites",
)
_HTTP_KEYS = ("headers", "http2")
#: exporter-toolkit keys this exporter does not implement: refused by name rather than ignored.
_UNSUPPORTED = {
    "rate_limit": "rate_limit",
    "cert": "inline cert (use cert_file)",
    "key": "inline key (use key_file)",
    "client_ca": "inline client_ca (use client_ca_file)",
    "curve_preferences": "curve_preferences",
    "client_allowed_sans": "client_allowed_sans",
}


@dataclass(frozen=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this TLS set-up reads (watched for rotation)."""
        extra = (self.client_ca_file,) if self.client_ca_file else ()
        return (self.cert_file, self.key_file, *extra)

    def ssl_context(self) -> ssl.SSLContext:
        """A server context with the certificate loaded: WebConfigError when a file is
        missing, unreadable or not what it should be."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            # password="": an encrypted key fails here instead of prompting on a terminal.
            ctx.load_cert_chain(self.cert_file, self.key_file, password="")
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"cannot load cert_file {self.cert_file} with key_file {self.key_file}: "
                f"{_reason(exc)}"
            ) from None
        legacy = [CIPHER_SUITES[s] for s in self.cipher_suites if s in CIPHER_SUITES]
        if legacy:
            try:
                ctx.set_ciphers(":".join(legacy))
            except ssl.SSLError as exc:
                raise WebConfigError(f"cipher_suites: {_reason(exc)}") from None
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(
                    f"cannot load client_ca_file {self.client_ca_file}: {_reason(exc)}"
                ) from None
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """What one listener enforces: TLS (or plain HTTP), basic auth users, extra headers."""

    path: Path | None = None
    tls: TlsSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)  # user → bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file this configuration was read from (watched for changes)."""
        own = (self.path,) if self.path else ()
        return own + (self.tls.files if self.tls else ())

    def describe(self) -> str:
        """For the log: what is on, never a secret."""
        parts = [f"TLS ({self.tls.client_auth_type})" if self.tls else "plain HTTP"]
        parts.append(f"basic auth ({len(self.users)} users)" if self.users else "no basic auth")
        return ", ".join(parts)


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check a web configuration file, its certificate and keys included."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: {_reason(exc)}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(f"{path}: {_yaml_problem(exc)}") from None
    try:
        config = parse_web_config(raw, base=path.parent)
    except WebConfigError as exc:
        raise WebConfigError(f"{path}: {exc}") from None
    config = WebConfig(path, config.tls, config.users, config.headers)
    if config.tls is not None:
        try:
            config.tls.ssl_context()  # the files exist and match
        except WebConfigError as exc:
            raise WebConfigError(f"{path}: {exc}") from None
    return config


def parse_web_config(raw: Any, base: Path) -> WebConfig:
    """The configuration from a parsed YAML document; relative file names are from `base`."""
    if raw is None:
        return WebConfig()
    top = _mapping(raw, "the file")
    _check_keys(top, _TOP_KEYS, "")
    tls = _parse_tls(top.get("tls_server_config"), base)
    users = _parse_users(top.get("basic_auth_users"))
    headers = _parse_http(top.get("http_server_config"))
    return WebConfig(None, tls, users, headers)


def _parse_tls(raw: Any, base: Path) -> TlsSettings | None:
    if raw is None:
        return None
    tls = _mapping(raw, "tls_server_config")
    _check_keys(tls, _TLS_KEYS, "tls_server_config.")
    if not tls:
        return None
    where = "tls_server_config"
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if not cert:
        raise WebConfigError(f"{where}: missing cert_file")
    if not key:
        raise WebConfigError(f"{where}: missing key_file")
    client_auth = _string(
        tls.get("client_auth_type") or "NoClientCert", f"{where}.client_auth_type"
    )
    if client_auth in _UNVERIFIED_CLIENT_AUTH:
        raise WebConfigError(
            f"{where}.client_auth_type {client_auth} (a client certificate asked for but not "
            "verified) is not supported: use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
    if client_auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"{where}.client_auth_type: invalid {client_auth!r}, expected one of "
            f"{', '.join(CLIENT_AUTH_TYPES)}"
        )
    ca = tls.get("client_ca_file")
    if ca and client_auth == "NoClientCert":
        raise WebConfigError(f"{where}: client_ca_file is set but client_auth_type is NoClientCert")
    if not ca and client_auth != "NoClientCert":
        raise WebConfigError(f"{where}: client_auth_type {client_auth} needs client_ca_file")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = _string(tls.get(name) or default, f"{where}.{name}")
        if value not in TLS_VERSIONS:
            raise WebConfigError(
                f"{where}.{name}: invalid {value!r}, expected one of {', '.join(TLS_VERSIONS)}"
            )
        versions[name] = value
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise WebConfigError(f"{where}: min_version is above max_version")
    suites = tls.get("cipher_suites") or []
    if not isinstance(suites, list):
        raise WebConfigError(f"{where}.cipher_suites: expected a list")
    for suite in suites:
        if suite not in CIPHER_SUITES and suite not in TLS13_SUITES:
            raise WebConfigError(f"{where}.cipher_suites: unknown cipher {suite!r}")
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(f"{where}.prefer_server_cipher_suites: expected true or false")
    return TlsSettings(
        cert_file=_file(cert, base, f"{where}.cert_file"),
        key_file=_file(key, base, f"{where}.key_file"),
        client_auth_type=client_auth,
        client_ca_file=_file(ca, base, f"{where}.client_ca_file") if ca else None,
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        cipher_suites=tuple(suites),
        prefer_server_cipher_suites=prefer,
    )


def _parse_users(raw: Any) -> dict[str, bytes]:
    if raw is None:
        return {}
    users = _mapping(raw, "basic_auth_users")
    out: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError("basic_auth_users: a user name is empty or has a ':'")
        match = _BCRYPT_HASH.match(hashed) if isinstance(hashed, str) else None
        if not match or not 4 <= int(match.group(1)) <= 31:
            # Never echo the value: it may be a password pasted where its hash belongs.
            raise WebConfigError(
                f"basic_auth_users: the password of {user!r} is not a bcrypt hash "
                "(make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')"
            )
        out[user] = hashed.encode("ascii")
    return out


def _parse_http(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    http = _mapping(raw, "http_server_config")
    _check_keys(http, _HTTP_KEYS, "http_server_config.")
    if not isinstance(http.get("http2", True), bool):  # HTTP/1.1 only here: accepted, no effect
        raise WebConfigError("http_server_config.http2: expected true or false")
    headers = _mapping(http.get("headers") or {}, "http_server_config.headers")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError(f"http_server_config.headers: header {name!r} cannot be set")
        allowed = EXTRA_HEADERS[name]
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            expected = f"one of {', '.join(allowed)}" if allowed else "a string"
            raise WebConfigError(f"http_server_config.headers.{name}: expected {expected}")
        out[name] = value
    return out


def _check_keys(raw: Mapping[Any, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in raw:
        if key in known:
            continue
        if key in _UNSUPPORTED:
            raise WebConfigError(f"{prefix}{key}: {_UNSUPPORTED[key]} is not supported")
        raise WebConfigError(f"unknown key {prefix}{key} (expected one of {', '.join(known)})")


def _mapping(raw: Any, where: str) -> Mapping[Any, Any]:
    if not isinstance(raw, dict):
        raise WebConfigError(f"{where}: expected a mapping")
    return raw


def _string(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise WebConfigError(f"{where}: expected a string")
    return raw


def _file(raw: Any, base: Path, where: str) -> Path:
    return base / _string(raw, where)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc.args[-1] if exc.args else exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The problem and where, without yaml's quote of the line (it may hold a hash)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "invalid YAML"
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
