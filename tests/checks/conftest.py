"""A real HTTP server in a thread, whose answers the tests choose per path.

`/slow` hangs until the test ends (at most a minute): a check's timeout must cut it short,
and a test that ignored the timeout would take that minute, not a second more.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SLOW_S = 60.0  # how long /slow hangs at most; the fixture releases it at the end of the test


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        if self.path == "/slow":
            self.server.released.wait(SLOW_S)
        if self.path == "/flaky":
            # Healthy from the third request on.
            status, body = (200, b"ok") if self.server.hits[self.path] >= 3 else (503, b"warming")
        elif self.path == "/host":
            # Like Django's ALLOWED_HOSTS with DEBUG: only the loopback names get in.
            allowed = self.headers["Host"].split(":")[0] in ("127.0.0.1", "localhost")
            status, body = (200, b"ok") if allowed else (400, b"DisallowedHost")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            status, body = {
                "/ok": (200, b"ok"),
                "/slow": (200, b"late"),
                "/fail": (503, b"database   unreachable\n"),
                "/created": (201, b""),
            }.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: dict[str, int] = {}
        self.released = threading.Event()  # set at the end of the test: /slow answers then

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out on /slow close early; that is the point

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.released.set()  # no handler outlives the test
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
