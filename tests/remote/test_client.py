"""What the CLI says when a conveyor server refuses, is away, or speaks bad TLS: a
message naming the server and what to do, the local exit code, never a traceback and
never the token."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conveyor.errors import EXIT_FAILED, EXIT_USAGE, ConveyorError, UsageError
from conveyor.remote.client import (
    Client,
    answer_error,
    in_clear,
    server_url,
    token_from_environment,
)
from tests.support.project import free_port

URL = "https://conveyor.example.com"
TOKEN = "cvt_" + "s" * 43


def answering(status: int, body: object) -> Client:
    """A client whose server answers every request with `status` and `body` (JSON, or
    text when `body` is a str)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    return Client(URL, TOKEN, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "says", "hint_says"),
    [
        (400, {"error": 'unknown release "x"', "hint": None}, EXIT_USAGE, 'unknown release "x"', ""),
        (401, {"error": "a valid API token is required"}, EXIT_FAILED, "was refused", "tokens create"),
        (403, {"error": "forbidden: token d (viewer) may not deploy"}, EXIT_FAILED,
         "forbidden: token d (viewer) may not deploy", "deployer deploys"),
        (404, {"error": 'unknown environment "qa"'}, EXIT_USAGE, 'unknown environment "qa"', ""),
        (409, {"error": "staging has no unfinished deployment", "hint": "deploy first"},
         EXIT_FAILED, "staging has no unfinished deployment", "deploy first"),
        (422, {"error": "invalid request: body/full: bad"}, EXIT_USAGE, "body/full", ""),
        (500, {"error": "internal error"}, EXIT_FAILED, "internal error", "server's log"),
        (502, "<html>Bad Gateway</html>", EXIT_FAILED, "not an answer of conveyor server",
         "CONVEYOR_SERVER"),
    ],
)  # fmt: skip
def test_answers_other_than_success_become_errors_with_the_local_exit_codes(
    status: int, body: object, exit_code: int, says: str, hint_says: str
) -> None:
    with pytest.raises(ConveyorError) as raised:
        answering(status, body).get("/api/environments")
    error = raised.value
    assert error.exit_code == exit_code
    assert says in error.message and URL in error.message
    assert hint_says in (error.hint or "")
    assert TOKEN not in error.message + (error.hint or "")


def test_a_success_is_its_json() -> None:
    answer = answering(202, {"id": "d1", "status": "running"}).post("/api/x", {})
    assert (answer.status, answer.body) == (202, {"id": "d1", "status": "running"})


def test_a_403_keeps_the_servers_own_hint() -> None:
    error = answer_error(URL, 403, {"error": "forbidden: limited", "hint": "ask for staging"})
    assert error.hint == "ask for staging"


def test_connection_refused_names_the_server_and_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConveyorError) as raised:
        Client(url, TOKEN).get("/healthz")
    assert raised.value.message == f"cannot reach conveyor server at {url}: connection refused"
    assert "conveyor server start" in (raised.value.hint or "")
    assert raised.value.exit_code == EXIT_FAILED


def test_a_timeout_says_so() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ConveyorError, match="did not answer in time"):
        Client(URL, TOKEN, transport=httpx.MockTransport(handler)).get("/api/environments")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTPS server on loopback with a self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_tls_is_verified_and_a_private_ca_is_trusted_through_ssl_cert_file(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = tls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(ConveyorError) as raised:
        Client(url, TOKEN).get("/healthz")
    assert raised.value.message.startswith(f"cannot reach conveyor server at {url} securely")
    assert "certificate" in raised.value.message
    assert "SSL_CERT_FILE" in (raised.value.hint or "")

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert Client(url, TOKEN).get("/healthz").body == {"status": "ok"}


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("https://conveyor.example.com/", "https://conveyor.example.com"),
        ("http://127.0.0.1:8700", "http://127.0.0.1:8700"),
        (" http://[::1]:8700 ", "http://[::1]:8700"),
    ],
)
def test_server_urls(text: str, url: str) -> None:
    assert server_url(text) == url


@pytest.mark.parametrize("text", ["127.0.0.1:8700", "ftp://host", "https://", "http://h/?a=1"])
def test_a_server_that_is_not_an_http_url_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="expected"):
        server_url(text)


@pytest.mark.parametrize(
    ("url", "clear"),
    [
        ("http://127.0.0.1:8700", False),
        ("http://127.3.0.1:8700", False),
        ("http://[::1]:8700", False),
        ("http://localhost:8700", False),
        ("https://10.0.0.5", False),
        ("http://10.0.0.5:8700", True),
        ("http://conveyor.internal", True),
    ],
)
def test_a_token_travels_in_clear_over_http_to_another_machine(url: str, clear: bool) -> None:
    assert in_clear(url) is clear


def test_the_token_comes_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    with pytest.raises(UsageError, match="CONVEYOR_TOKEN is not set"):
        token_from_environment(URL)
    monkeypatch.setenv("CONVEYOR_TOKEN", f" {TOKEN}\n")
    assert token_from_environment(URL) == TOKEN


def test_the_cli_has_no_token_option_and_refuses_local_commands_with_a_server() -> None:
    from conveyor.cli.main import app

    runner = CliRunner()
    assert "--token" not in runner.invoke(app, ["--help"]).output
    result = runner.invoke(app, ["--server", "http://127.0.0.1:9", "build"])
    assert isinstance(result.exception, UsageError)
    assert "conveyor build is not available through a server yet" in result.exception.message
    assert "run it on the server's machine" in result.exception.message


def test_a_plain_http_server_on_another_machine_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conveyor.cli.main import app

    monkeypatch.setenv("CONVEYOR_TOKEN", TOKEN)
    result = CliRunner().invoke(app, ["--server", "http://192.0.2.1:9", "audit", "--help"])
    assert "the token travels in clear" in result.output + str(result.stderr_bytes or b"")
