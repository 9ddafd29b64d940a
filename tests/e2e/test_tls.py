"""End to end: an environment's `tls:` served by Caddy and by HAProxy.

A small app deployed behind each router with a certificate made at test time (a
private CA): it answers over HTTPS verified against that CA, sees
`X-Forwarded-Proto: https`, the `verify:` smoke test of the https URL passes (it
trusts the configured certificate), a redeploy under load loses no request, and
the key never enters a release. Bad files are refused with their key path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from tests.routers.conftest import wait_until
from tests.support.apps import make_app
from tests.support.certs import Issued, issue, served_serial
from tests.support.load import traffic
from tests.support.project import Project, free_port

pytestmark = pytest.mark.slow

APP = """\
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "v1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        proto = self.headers.get("X-Forwarded-Proto")
        body = f"{VERSION} proto {proto}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CONFIG = """\
project: tls
services:
  web:
    run: python3 app.py
    health: {type: http, path: /health, interval: 200ms}
    drain_timeout: 5s
    stop_timeout: 2s
environments:
  staging:
    listen: ${LISTEN}
    router: ${ROUTER}
    tls: {certificate: certs/site.pem, key: certs/site.key}
    verify:
      bake: 1s
      interval: 300ms
      smoke: [{name: home, path: /}]
"""


def _app(tmp_path: Path, router: str) -> tuple[Project, Issued]:
    issued = issue(tmp_path / "app" / "certs")  # in the repository, committed: a user's slip
    app = make_app(tmp_path, CONFIG, {"app.py": APP})
    app.env["ROUTER"] = router
    return app, issued


@pytest.mark.parametrize("router", ["caddy", "haproxy"])
def test_an_app_is_served_over_tls_and_redeployed_without_a_failure(
    tmp_path: Path, router: str
) -> None:
    app, issued = _app(tmp_path, router)
    url = "https://" + app.env["LISTEN"]
    try:
        app.run("build")
        # its `verify:` smoke test requests the https URL: it trusts certs/site.pem
        deployed = app.run("deploy", "staging")
        assert f"1 smoke test of {url} every 300ms" in deployed.stdout + deployed.stderr
        with httpx.Client(verify=issued.client_context(), trust_env=False) as client:
            assert client.get(url + "/").text == "v1 proto https\n"
        status = json.loads(app.run("status", "staging", "--json").stdout)
        assert json.dumps(status).count(url) >= 1  # the environment's URL is https

        (app.root / "app.py").write_text(APP.replace('"v1"', '"v2"'))
        app.commit("v2")
        app.run("build")
        with traffic(url + "/", clients=2, ssl_context=issued.client_context()) as load:
            app.run("deploy", "staging")
            result = load.stop()
        assert result.failures == 0, result.summary()
        assert result.requests > 50, result.summary()
        with httpx.Client(verify=issued.client_context(), trust_env=False) as client:
            assert client.get(url + "/").text == "v2 proto https\n"

        # renewal: new files in place, a deploy with nothing else to do serves them
        renewed = issue(tmp_path / "app" / "certs")
        again = app.run("deploy", "staging")
        assert "nothing to do" in again.stdout + again.stderr
        port = int(app.env["LISTEN"].rpartition(":")[2])
        assert served_serial("127.0.0.1", port, renewed.client_context()) == renewed.serial

        # the key was committed with the app, yet no release holds it
        releases = Path(app.env["CONVEYOR_HOME"]) / "releases"
        assert list(releases.rglob("app.py")), "the releases are elsewhere"
        assert not list(releases.rglob("site.key"))
        assert list(releases.rglob("site.pem"))  # the certificate is public: not excluded
    finally:
        app.run("down", "staging", "--yes", check=False)
        app.shutdown()


def test_unsafe_or_missing_files_are_refused_with_their_key_path(tmp_path: Path) -> None:
    app, issued = _app(tmp_path, "caddy")
    os.chmod(issued.key, 0o644)
    checked = app.run("validate", check=False)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert (
        f"environments/staging/tls/key: {issued.key} can be read by other users (mode 0644); "
        f"run `chmod 600 {issued.key}`"
    ) in checked.stderr
    assert "Traceback" not in checked.stderr

    app.run("build")
    refused = app.run("deploy", "staging", check=False)
    assert refused.returncode == 2
    assert "environments/staging/tls/key" in refused.stderr
    assert app.json("history", "staging") == []  # refused before a deployment was recorded

    os.chmod(issued.key, 0o600)
    issued.certificate.unlink()
    checked = app.run("validate", check=False)
    assert checked.returncode == 2
    assert f"environments/staging/tls/certificate: {issued.certificate} does not exist" in (
        checked.stderr
    )
    issued.certificate.write_text("not a certificate\n")
    checked = app.run("validate", check=False)
    assert f"{issued.certificate} holds no PEM certificate" in checked.stderr

    other = issue(tmp_path / "other")
    issued.certificate.write_bytes(other.certificate.read_bytes())
    checked = app.run("validate", check=False)
    assert f"{issued.key} is not the key of the certificate in {issued.certificate}" in (
        checked.stderr
    )
    app.shutdown()


def test_conveyor_server_is_reached_through_the_router_over_tls(tmp_path: Path) -> None:
    # Caddy only: HAProxy's TLS is tested above and the server's route is a host route
    # like any other (its order before the apps' routes is tested for both routers).
    router = "caddy"
    address = f"127.0.0.1:{free_port()}"
    config = CONFIG + f"    server: {{host: localhost, address: '{address}'}}\n"
    issued = issue(tmp_path / "app" / "certs")
    app = make_app(tmp_path, config, {"app.py": APP})
    app.env["ROUTER"] = router
    port = app.env["LISTEN"].rpartition(":")[2]
    public = f"https://localhost:{port}"
    try:
        app.run("build")
        app.run("deploy", "staging")
        started = app.run("server", "start", "--listen", address)
        assert f"and through staging's router: {public}/" in started.stdout
        token = app.run("tokens", "create", "--name", "ops", "--role", "viewer").stdout.strip()
        with httpx.Client(verify=issued.client_context(), trust_env=False, timeout=10) as client:

            def healthy() -> bool:
                try:
                    return client.get(public + "/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(healthy, timeout=60, every=0.1)
            answer = client.get(
                public + "/api/environments", headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200 and answer.json()["project"] == "tls"
            assert client.get(public + "/api/environments").status_code == 401
            # the dashboard's cookies are Secure: the router said the request came over TLS
            login = client.get(public + "/login")
            assert login.status_code == 200
            assert "; secure" in login.headers["set-cookie"].lower()
            # the app keeps its own requests (another host name)
            assert client.get(f"https://127.0.0.1:{port}/").text == "v1 proto https\n"
        direct = httpx.get(f"http://{address}/login", trust_env=False)  # plain HTTP, no proxy
        assert "; secure" not in direct.headers["set-cookie"].lower()
        # a deploy (here one with nothing to do) keeps the server's route
        app.run("deploy", "staging")
        with httpx.Client(verify=issued.client_context(), trust_env=False) as client:
            assert client.get(public + "/healthz").status_code == 200
    finally:
        app.run("server", "stop", check=False)
        app.run("down", "staging", "--yes", check=False)
        app.shutdown()
