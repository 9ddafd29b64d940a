"""`tls:` on the real routers: HTTPS with the environment's certificate, verified against
the test CA, plain HTTP with `X-Forwarded-Proto: https` to the backends, and a renewed
certificate served after the next `ensure_environment`."""

from __future__ import annotations

import ssl
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.config.models.tls import TlsConfig
from conveyor.routers.base import Router, RouteSpec
from conveyor.routers.caddy import CaddyRouter
from conveyor.routers.haproxy import HAProxyRouter
from conveyor.routers.tls import TlsFiles, tls_files
from tests.routers.conftest import Backend, CaddyProcess, HAProxyProcess, free_port, run
from tests.support.certs import issue, served_serial


@pytest.fixture(params=["caddy", "haproxy"])
def router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Router]:
    if request.param == "caddy":
        caddy: CaddyProcess = request.getfixturevalue("caddy")
        router: Router = CaddyRouter(caddy.paths.caddy_admin_socket, tmp_path / "router")
    else:
        haproxy: HAProxyProcess = request.getfixturevalue("haproxy")
        router = HAProxyRouter(haproxy.paths)
    yield router
    run(router.remove_environment("tls"))


def _files(directory: Path) -> tuple[TlsFiles, Path, int]:
    issued = issue(directory)
    config = TlsConfig(certificate=str(issued.certificate), key=str(issued.key))
    return tls_files(directory, "tls", config, "conveyor.yml"), issued.ca, issued.serial


def test_serves_https_with_the_certificate_and_tells_the_backend(
    router: Router, tmp_path: Path, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    files, ca, serial = _files(tmp_path / "certs")
    backend = backends("web")
    run(router.ensure_environment("tls", listen, [RouteSpec("web")], tls=files))
    run(router.register("tls", "web", backend.address))
    run(router.set_weights("tls", "web", {backend.address: 1}))

    with httpx.Client(verify=_context(ca), trust_env=False) as client:
        answer = client.get(f"https://{listen}/orders")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "name": "web",
            "path": "/orders",
            "host": listen,
            "proto": "https",
        }
        # by name too (SNI): the certificate names localhost
        port = listen.rpartition(":")[2]
        assert client.get(f"https://localhost:{port}/").json()["proto"] == "https"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{listen}/", trust_env=False)  # the system's CAs only
    assert served_serial("127.0.0.1", int(port), _context(ca)) == serial

    if isinstance(router, HAProxyRouter):  # cert + key in one file, private to the router
        pem = router.tls_pem("tls")
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
        assert stat.S_IMODE(pem.parent.stat().st_mode) == 0o700
        assert files.key_pem in pem.read_bytes()


def test_a_renewed_certificate_is_served_after_the_next_ensure(
    router: Router, tmp_path: Path, backends: Callable[[str], Backend]
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    port = int(listen.rpartition(":")[2])
    first, ca, serial = _files(tmp_path / "certs")
    backend = backends("web")
    run(router.ensure_environment("tls", listen, [RouteSpec("web")], tls=first))
    run(router.register("tls", "web", backend.address))
    run(router.set_weights("tls", "web", {backend.address: 1}))
    assert served_serial("127.0.0.1", port, _context(ca)) == serial

    # the same paths, new content (a renewal): the backends stay, the new certificate serves
    renewed, new_ca, new_serial = _files(tmp_path / "certs")
    assert renewed.certificate == first.certificate and renewed.digest != first.digest
    run(router.ensure_environment("tls", listen, [RouteSpec("web")], tls=renewed))
    assert served_serial("127.0.0.1", port, _context(new_ca)) == new_serial
    assert run(router.weights("tls", "web")) == {backend.address: 1}

    # and without `tls:` the environment is plain HTTP again
    run(router.ensure_environment("tls", listen, [RouteSpec("web")]))
    answer = httpx.get(f"http://{listen}/", trust_env=False)
    assert answer.json()["proto"] == "http"
    if isinstance(router, HAProxyRouter):
        assert not router.tls_pem("tls").exists()


def _context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))
