"""--web.config.file parsing: the exporter-toolkit format, strict, one line per error, no secret
in any message."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from exporter.web.config import WebConfigError, load_web_config
from tests.tls import Authority, bcrypt_hash, write_web_config

SECRET_HASH = bcrypt_hash("correct horse")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca = Authority.create(d, "ca")
    server = ca.issue("server", server=True)
    return {"ca": ca.pair.cert, "cert": server.cert, "key": server.key, "dir": d}


def load(tmp_path: Path, config) -> object:  # type: ignore[no-untyped-def]
    path = tmp_path / "web.yml"
    if isinstance(config, str):
        path.write_text(config)
    else:
        write_web_config(path, config)
    return load_web_config(path)


def test_full_configuration_is_read(certs, tmp_path):
    config = load(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": str(certs["cert"]),
                "key_file": str(certs["key"]),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(certs["ca"]),
                "min_version": "TLS13",
                "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
            },
            "http_server_config": {"headers": {"X-Frame-Options": "deny"}, "http2": False},
            "basic_auth_users": {"prometheus": SECRET_HASH},
        },
    )
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.users == {"prometheus": SECRET_HASH.encode()}
    assert config.headers == {"X-Frame-Options": "deny"}
    ctx = config.tls.ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.describe() == "TLS (RequireAndVerifyClientCert), basic auth (1 users)"


def test_relative_file_names_are_read_from_the_config_files_directory(certs):
    path = certs["dir"] / "web.yml"
    write_web_config(
        path, {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"}}
    )
    assert load_web_config(path).tls.cert_file == certs["cert"]


def test_an_empty_file_means_plain_http_and_no_auth(tmp_path):
    config = load(tmp_path, "")
    assert config.tls is None and not config.users and not config.headers


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("tls_server_config: [\n", "invalid YAML at line"),
        ({"basic_auth_user": {"a": SECRET_HASH}}, "unknown key basic_auth_user"),
        ({"tls_server_config": {"cert_file": "x.crt"}}, "missing key_file"),
        ({"tls_server_config": {"key_file": "x.key"}}, "missing cert_file"),
        ({"tls_server_config": {"cert_filee": "x"}}, "unknown key tls_server_config.cert_filee"),
        ({"rate_limit": {"burst": 1}}, "rate_limit: rate_limit is not supported"),
        ({"http_server_config": {"headers": {"Content-Type": "x"}}}, "'Content-Type' cannot be"),
        ({"http_server_config": {"headers": {"X-Frame-Options": "allow"}}}, "deny, sameorigin"),
        ({"basic_auth_users": {"a:b": SECRET_HASH}}, "user name is empty or has a ':'"),
        ({"basic_auth_users": ["a"]}, "basic_auth_users: expected a mapping"),
    ],
)
def test_broken_files_are_one_line_naming_the_file_and_the_key(tmp_path, config, message):
    with pytest.raises(WebConfigError) as err:
        load(tmp_path, config)
    text = str(err.value)
    assert message in text
    assert text.startswith(str(tmp_path / "web.yml"))
    assert "\n" not in text


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"client_auth_type": "RequireAnyClientCert"}, "is not supported"),
        ({"client_auth_type": "Sometimes"}, "invalid 'Sometimes'"),
        ({"client_auth_type": "RequireAndVerifyClientCert"}, "needs client_ca_file"),
        ({"client_ca_file": "ca.crt"}, "client_auth_type is NoClientCert"),
        ({"min_version": "TLS14"}, "min_version: invalid 'TLS14'"),
        ({"min_version": "TLS13", "max_version": "TLS12"}, "min_version is above max_version"),
        ({"cipher_suites": ["TLS_FAST_AND_LOOSE"]}, "unknown cipher 'TLS_FAST_AND_LOOSE'"),
        ({"cert_file": "missing.crt"}, "cannot load cert_file"),
        ({"key_file": "ca.crt"}, "cannot load cert_file"),  # a certificate is not its key
        ({"client_auth_type": "VerifyClientCertIfGiven", "client_ca_file": "nope.crt"}, "nope"),
    ],
)
def test_broken_tls_settings_are_refused(certs, tls, message):
    path = certs["dir"] / "broken.yml"
    settings = {"cert_file": "server.crt", "key_file": "server.key", **tls}
    write_web_config(path, {"tls_server_config": settings})
    with pytest.raises(WebConfigError, match=message):
        load_web_config(path)


@pytest.mark.parametrize("value", ["hunter2", "$2b$10$short", "", None, 12345])
def test_a_password_that_is_not_a_bcrypt_hash_is_refused_without_echoing_it(tmp_path, value):
    with pytest.raises(WebConfigError) as err:
        load(tmp_path, {"basic_auth_users": {"alice": value}})
    assert "'alice' is not a bcrypt hash" in str(err.value)
    if value:
        assert str(value) not in str(err.value)


def test_a_yaml_error_does_not_quote_the_line_it_is_on(tmp_path):
    # yaml's own message quotes the offending line: here, a hash.
    text = f"basic_auth_users:\n  alice: {SECRET_HASH}\n   bob: : x\n"
    with pytest.raises(WebConfigError) as err:
        load(tmp_path, text)
    assert SECRET_HASH not in str(err.value) and "line 3" in str(err.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(WebConfigError, match="No such file"):
        load_web_config(tmp_path / "absent.yml")
