"""Real servers for the metric sources: an HTTP server in a thread, and Prometheus.

`Server` answers each path with what a test put in `routes` (status, headers,
body, delay) and keeps the headers of the requests it got; a delayed answer is
cut short when the server stops, so a long delay never outlives its test. The session's
Prometheus scrapes one such server, serving a text exposition, every second.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0
    location: str | None = None

    @classmethod
    def json(cls, document: object, status: int = 200, delay: float = 0.0) -> Route:
        return cls(status, json.dumps(document).encode(), delay=delay)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        self.server.requests.append((path, dict(self.headers.items())))
        route = self.server.routes.get(path, Route(404, b"no such page", "text/plain"))
        if route.delay:
            self.server.released.wait(route.delay)
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(route.body)))
        if route.location:
            self.send_header("Location", route.location)
        self.end_headers()
        self.wfile.write(route.body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.released = threading.Event()  # set when the server stops: delays end

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out on a slow route close early; that is the point

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _serve() -> tuple[Server, threading.Thread]:
    server = Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    return server, thread


def _stop(server: Server, thread: threading.Thread) -> None:
    server.released.set()
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def http_server() -> Iterator[Server]:
    server, thread = _serve()
    yield server
    _stop(server, thread)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


EXPOSITION = """\
# HELP shop_error_ratio Share of failed checkouts.
# TYPE shop_error_ratio gauge
shop_error_ratio 0.25
# TYPE shop_queue_depth gauge
shop_queue_depth 7
# TYPE shop_inflight gauge
shop_inflight 3
# TYPE shop_requests_total counter
shop_requests_total{route="/api"} 30
shop_requests_total{route="/cart"} 12
shop_requests_total{route="/pay"} 5
shop_requests_total{route="/home"} 1
"""

_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ["{target}"]
"""


@dataclass
class Prometheus:
    url: str
    exporter: Server

    def expose(self, text: str) -> None:
        self.exporter.routes["/metrics"] = Route(200, text.encode(), "text/plain; version=0.0.4")

    def value(self, query: str) -> str | None:
        """The first sample of `query`, as Prometheus writes it; None without one."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2).json()
        result = answer["data"]["result"]
        return str(result[0]["value"][1]) if result else None


class _Launch:
    """A Prometheus process and its exporter, from start to stop.

    Prometheus hands new targets to its scrapers on a 5 s tick, so the first
    scrape comes about 5 s after it starts: it is started as soon as the
    session knows a test needs it, and runs while the other tests do.
    """

    def __init__(self) -> None:
        directory = self.directory = Path(tempfile.mkdtemp(prefix="conveyor-prometheus-"))
        binary = _binary()
        assert binary is not None
        self.exporter, self.thread = _serve()
        config = directory / "prometheus.yml"
        config.write_text(
            _CONFIG.replace("{target}", f"127.0.0.1:{self.exporter.server_address[1]}")
        )
        self.log = directory / "prometheus.log"
        port = free_port()
        self.server = Prometheus(f"http://127.0.0.1:{port}", self.exporter)
        self.server.expose(EXPOSITION)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.ready = False

    def _log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def wait(self) -> Prometheus:
        """The server once it has scraped the exporter."""
        deadline = time.monotonic() + 20
        while not self.ready:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self._log_tail()}")
            # Not up yet: connection refused, or 503 while starting.
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                self.ready = self.server.value("shop_error_ratio") is not None
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus never scraped the exporter:\n{self._log_tail()}")
            if not self.ready:
                time.sleep(0.1)
        return self.server

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _stop(self.exporter, self.thread)
        shutil.rmtree(self.directory, ignore_errors=True)


_launched: list[_Launch] = []


def _binary() -> str | None:
    return shutil.which("prometheus") or next(
        (path for path in ("/usr/bin/prometheus",) if Path(path).exists()), None
    )


def _launch() -> _Launch:
    if not _launched:
        _launched.append(_Launch())
    return _launched[0]


@pytest.hookimpl(trylast=True)  # after -k / -m deselected what they do
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    wanted = any("prometheus" in getattr(item, "fixturenames", ()) for item in items)
    if wanted and _binary() is not None:
        _launch()


def pytest_sessionfinish() -> None:
    while _launched:
        _launched.pop().stop()


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    """A real Prometheus (apt package) on a free port, scraping `EXPOSITION` every second."""
    if _binary() is None:
        pytest.fail(
            "prometheus is not installed: run ./scripts/bootstrap (apt-get install prometheus)"
        )
    launch = _launch()
    try:
        yield launch.wait()
    finally:
        pytest_sessionfinish()
