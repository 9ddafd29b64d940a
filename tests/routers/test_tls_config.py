"""`tls:` without a router: the config key, the generated router configs, the file checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import parse_config
from conveyor.config.models.tls import TlsConfig
from conveyor.errors import ConfigError
from conveyor.paths import Paths
from conveyor.routers.base import RouteSpec
from conveyor.routers.caddy import _set_certificate, build_certificate, build_server
from conveyor.routers.haproxy_process import EnvironmentState, RouterState, render_layout
from conveyor.routers.tls import TlsFiles, tls_files
from tests.support.certs import issue

CONFIG = """\
project: p
services: {web: {run: "python3 app.py"}}
environments:
  prod:
    listen: 127.0.0.1:8443
    tls: {certificate: site.pem, key: site.key}
"""


def _files(tmp_path: Path) -> TlsFiles:
    issue(tmp_path)
    return tls_files(tmp_path, "prod", TlsConfig(certificate="site.pem", key="site.key"), "c")


def test_an_environment_with_tls_has_an_https_url_and_strict_keys() -> None:
    env = parse_config(CONFIG, {}).environments["prod"]
    assert env.effective_url == "https://127.0.0.1:8443"
    assert env.tls == TlsConfig(certificate="site.pem", key="site.key")
    with pytest.raises(ConfigError, match=r"environments/prod/tls/cert"):
        parse_config(CONFIG.replace("certificate:", "cert:"), {})


def test_caddy_serves_the_tagged_certificate_and_a_renewal_changes_the_config(
    tmp_path: Path,
) -> None:
    files = _files(tmp_path)
    server = build_server("prod", ":8443", [RouteSpec("web")], {}, files)
    assert server["tls_connection_policies"] == [
        {"certificate_selection": {"any_tag": ["conveyor-tls-prod"]}}
    ]
    assert server["automatic_https"] == {"disable": True}  # no ACME, no redirect
    assert "tls_connection_policies" not in build_server("prod", ":8443", [RouteSpec("web")], {})

    other = {"certificate": "/x.pem", "key": "/x.key", "tags": ["someone-else"]}
    config: dict[str, object] = {"apps": {"tls": {"certificates": {"load_files": [other]}}}}
    _set_certificate(config, "prod", build_certificate("prod", files))
    _set_certificate(config, "prod-eu", build_certificate("prod-eu", files))
    loaded = config["apps"]["tls"]["certificates"]["load_files"]  # type: ignore[index]
    assert [f["tags"][0] for f in loaded] == [
        "someone-else",
        "conveyor-tls-prod",
        "conveyor-tls-prod-eu",
    ]
    assert loaded[1]["certificate"] == str(tmp_path / "site.pem")
    before = build_certificate("prod", files)
    renewed = TlsFiles(files.certificate, files.key, files.certificate_pem + b"\n", files.key_pem)
    assert build_certificate("prod", renewed) != before  # so Caddy reads the files again

    _set_certificate(config, "prod", None)
    _set_certificate(config, "prod-eu", None)
    assert config == {"apps": {"tls": {"certificates": {"load_files": [other]}}}}
    _set_certificate(config, "x", None)
    bare: dict[str, object] = {}
    _set_certificate(bare, "prod", None)
    assert bare == {}


def test_haproxy_binds_with_ssl_and_sets_the_forwarded_proto(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    plain = EnvironmentState(listen=":8443", routes=[RouteSpec("web")], backends={})
    tls = EnvironmentState(
        listen=":8443",
        routes=[RouteSpec("web")],
        backends={},
        tls_pem="/h/tls/prod.pem",
        tls_digest="abc",
    )
    plain_lines = render_layout(paths, RouterState(environments={"prod": plain}))
    tls_lines = render_layout(paths, RouterState(environments={"prod": tls}))
    assert "    bind :8443" in plain_lines
    assert "    http-request set-header X-Forwarded-Proto http" in plain_lines
    assert "    bind :8443 ssl crt /h/tls/prod.pem" in tls_lines
    assert "    http-request set-header X-Forwarded-Proto https" in tls_lines
    renewed = EnvironmentState(**{**tls.__dict__, "tls_digest": "def"})
    assert render_layout(paths, RouterState(environments={"prod": renewed})) != tls_lines
    assert EnvironmentState.from_json(tls.to_json()) == tls


def test_the_file_checks_name_the_key_path(tmp_path: Path) -> None:
    issued = issue(tmp_path)
    config = TlsConfig(certificate="site.pem", key="site.key")
    assert tls_files(tmp_path, "prod", config, "c").key_pem == issued.key.read_bytes()
    issued.key.chmod(0o640)
    with pytest.raises(ConfigError) as caught:
        tls_files(tmp_path, "prod", config, "c")
    assert caught.value.issues == [
        f"environments/prod/tls/key: {issued.key} can be read by other users (mode 0640); "
        f"run `chmod 600 {issued.key}`"
    ]
    issued.key.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        tls_files(tmp_path, "prod", TlsConfig(certificate="nope.pem", key="site.key"), "c")
    assert caught.value.issues == [
        f"environments/prod/tls/certificate: {tmp_path / 'nope.pem'} does not exist"
    ]
    issued.key.write_text("garbage\n")
    with pytest.raises(ConfigError) as caught:
        tls_files(tmp_path, "prod", config, "c")
    assert caught.value.issues == [
        f"environments/prod/tls/key: {issued.key} holds no PEM private key"
    ]


def test_the_server_route_comes_before_every_path_route_of_the_apps() -> None:
    from conveyor.routers import caddy, haproxy_process
    from conveyor.routers.base import SERVER_ROUTE

    specs = [RouteSpec("web"), RouteSpec("api", "/api"), RouteSpec(SERVER_ROUTE, host="c.example")]
    for order in (caddy.order_routes, haproxy_process.order_routes):
        assert [r.service for r in order(specs)] == [SERVER_ROUTE, "api", "web"]
    env = parse_config(CONFIG + "    server: {host: conveyor.example.com}\n", {}).environments[
        "prod"
    ]
    assert env.server is not None
    assert (env.server.host, env.server.address) == ("conveyor.example.com", "127.0.0.1:8700")
    with pytest.raises(ConfigError, match=r"environments/prod/server/host"):
        parse_config(CONFIG + "    server: {host: 'a b'}\n", {})
