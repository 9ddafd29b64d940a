"""What both shop services share: faults, request logging, a graceful HTTP/1.1 server.

A release holds only its own service directory, so each service carries an
identical copy of this file (tests/examples/test_shop_app.py checks that they
match). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DRAIN_TIMEOUT_S = 30.0  # in-flight requests get this long after SIGTERM
MAX_BODY = 1 << 20
_log_lock = threading.Lock()


def log(service: str, message: str) -> None:
    """One line on stdout, flushed (the supervisor's log is a pipe or a file)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    line = f"{stamp}Z {service}[{os.getpid()}] {message}\n"
    with _log_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def release() -> str:
    return os.environ.get("CONVEYOR_RELEASE", "dev")


@dataclass(frozen=True)
class Faults:
    """Misbehaviour asked for by `faults.json` in the working directory."""

    boot_delay_s: float = 0.0
    health: str = "ok"  # "fail": /health answers 503
    error_rate: float = 0.0  # fraction of non-health requests answered 500
    latency_ms: float = 0.0  # added to every non-health request
    crash: bool = False  # exit 1 right after start
    fail_after_requests: int = 0  # non-health requests after the first N answer 500 (0: never)

    @classmethod
    def load(cls, path: Path = Path("faults.json")) -> Faults:
        """Read and validate the file; exit 2 with a message when it is malformed."""
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            unknown = sorted(set(data) - set(cls.__dataclass_fields__))
            if unknown:
                raise ValueError(f"unknown keys {unknown}")
            faults = cls(
                boot_delay_s=float(data.get("boot_delay_s", 0.0)),
                health=str(data.get("health", "ok")),
                error_rate=float(data.get("error_rate", 0.0)),
                latency_ms=float(data.get("latency_ms", 0.0)),
                crash=data.get("crash", False),
                fail_after_requests=int(data.get("fail_after_requests", 0)),
            )
            if not isinstance(faults.crash, bool):
                raise ValueError("crash must be true or false")
            if faults.health not in ("ok", "fail"):
                raise ValueError('health must be "ok" or "fail"')
            if not 0.0 <= faults.error_rate <= 1.0:
                raise ValueError("error_rate must be between 0 and 1")
            if faults.fail_after_requests < 0:
                raise ValueError("fail_after_requests must be 0 or more")
        except (ValueError, TypeError) as exc:
            sys.stderr.write(f"{path.resolve()}: invalid faults file: {exc}\n")
            sys.exit(2)
        return faults

    def describe(self) -> str:
        active = {k: v for k, v in vars(self).items() if v != getattr(Faults(), k)}
        return json.dumps(active) if active else "none"


class Handler(BaseHTTPRequestHandler):
    """Routes /health, /version, /slow and /work; a service adds its own in `route`."""

    protocol_version = "HTTP/1.1"
    server_version = "shop"
    # Idle keep-alive connections stay open longer than a proxy keeps them in
    # its pool, so the proxy never reuses one the server is closing.
    timeout = 300
    # Headers and body go out in two writes; with Nagle's algorithm on, the
    # body waits for the peer's delayed ACK (40 ms) on every keep-alive request.
    disable_nagle_algorithm = True
    service = "service"
    prefix = ""  # also answer under this path prefix, e.g. "/api"
    server: Server

    # --- what a service overrides

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        """(status, content type, body) for the service's own routes; 404 by default."""
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def health(self) -> tuple[int, str]:
        if self.server.faults.health == "fail":
            return 503, "unhealthy (faults.json: health=fail)\n"
        return 200, "ok"

    def version(self) -> dict[str, object]:
        return {
            "release": release(),
            "environment": os.environ.get("CONVEYOR_ENV", "local"),
            "service": self.service,
            "pid": os.getpid(),
        }

    # --- plumbing

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def parse_request(self) -> bool:
        # The request line has arrived: from now on the connection is busy.
        self.server.set_busy(self.connection, True)
        self.started = time.perf_counter()
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            self.server.set_busy(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        if not self._discard_body():
            return
        url = urlsplit(self.path)
        path = url.path
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix) :] or "/"
        try:
            status, ctype, body = self._answer(method, path, parse_qs(url.query))
        except Exception as exc:
            log(self.service, f"error handling {method} {self.path}: {exc!r}")
            status, ctype, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self.respond(status, ctype, body)

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> tuple[int, str, bytes]:
        text = "text/plain; charset=utf-8"
        if path == "/health":
            status, message = self.health()
            return status, text, message.encode()
        faults = self.server.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.error_rate and random.random() < faults.error_rate:
            return 500, text, b"injected error (faults.json: error_rate)\n"
        if faults.fail_after_requests and self.server.count() > faults.fail_after_requests:
            return 500, text, b"injected error (faults.json: fail_after_requests)\n"
        if path == "/version" and method == "GET":
            return 200, "application/json", json.dumps(self.version()).encode()
        if path == "/slow" and method == "GET":
            try:
                ms = min(max(float(query.get("ms", ["1000"])[0]), 0.0), 120_000.0)
            except ValueError:
                return 400, text, b"ms must be a number of milliseconds\n"
            time.sleep(ms / 1000)
            return 200, text, f"slept {ms:g} ms\n".encode()
        if path == "/work" and method == "GET":
            # Burns CPU like a real handler would (templating, JSON, queries).
            try:
                ms = min(max(float(query.get("ms", ["1"])[0]), 0.0), 10_000.0)
            except ValueError:
                return 400, text, b"ms must be a number of milliseconds\n"
            until = time.thread_time() + ms / 1000
            while time.thread_time() < until:
                pass
            return 200, text, f"worked {ms:g} ms\n".encode()
        return self.route(method, path, query)

    def _discard_body(self) -> bool:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # no body parsing here; do not reuse the stream
            return True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self.respond(413 if length > 0 else 400, "text/plain", b"bad request body\n")
            return False
        if length:
            self.rfile.read(length)
        return True

    def respond(self, status: int, content_type: str, body: bytes) -> None:
        """Send a complete response; Content-Length always, Connection: close when draining."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.server.draining or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        elapsed = (time.perf_counter() - self.started) * 1000
        log(
            self.service,
            f'{self.client_address[0]} "{self.command} {self.path}" {status} {len(body)} '
            f"{elapsed:.1f}ms",
        )

    def end_headers(self) -> None:
        # Every response says which release answered it, error pages included
        # (send_error goes through here too): the benchmarks count it per request.
        self.send_header("X-Release", release())
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # `respond` logs with the duration; errors go through log_message

    def log_message(self, format: str, *args: object) -> None:
        log(self.service, f"{self.client_address[0]} {format % args}")


class Server(ThreadingHTTPServer):
    """Tracks connections so that SIGTERM can drain busy ones and close idle ones."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[Handler], faults: Faults) -> None:
        super().__init__(address, handler)
        self.faults = faults
        self.draining = False
        self._cond = threading.Condition()
        self._busy: dict[socket.socket, bool] = {}
        self._served = 0  # non-health requests so far (faults.json: fail_after_requests)

    def count(self) -> int:
        """Count one more non-health request; how many there were, this one included."""
        with self._cond:
            self._served += 1
            return self._served

    def server_bind(self) -> None:
        # HTTPServer's own asks DNS for the name of the bound address (socket.getfqdn), which
        # takes 10 s where no resolver answers (a host without DNS): the shop does not need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, conn: socket.socket) -> None:
        with self._cond:
            self._busy[conn] = False

    def untrack(self, conn: socket.socket) -> None:
        with self._cond:
            self._busy.pop(conn, None)
            self._cond.notify_all()

    def set_busy(self, conn: socket.socket, busy: bool) -> None:
        with self._cond:
            if conn in self._busy:
                self._busy[conn] = busy
            self._cond.notify_all()
            if not busy and self.draining:
                # Idle after the response that said Connection: close.
                _shut_read(conn)

    def drain(self, timeout: float) -> int:
        """Close idle connections and wait for busy ones; returns how many were cut off."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self.draining = True
            for conn, is_busy in self._busy.items():
                if not is_busy:
                    # Wakes the handler blocked reading the next request: it
                    # sees end of stream and closes the connection.
                    _shut_read(conn)
            while True:
                busy = sum(self._busy.values())
                remaining = deadline - time.monotonic()
                if busy == 0 or remaining <= 0:
                    return busy
                self._cond.wait(remaining)


def _shut_read(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RD)


def run(
    handler: type[Handler], default_port: int, on_start: Callable[[], None] | None = None
) -> None:
    """Start-up (faults, boot delay), serve, and on SIGTERM drain and exit 0."""
    service = handler.service
    server: Server | None = None

    def on_signal(signum: int, _frame: object) -> None:
        if server is None:
            log(service, f"signal {signum} before listening: exiting")
            sys.exit(0)
        if not server.draining:
            server.draining = True
            log(service, f"signal {signum}: draining (stop accepting, finish in-flight requests)")
            # shutdown() waits for serve_forever, which runs in this very thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    faults = Faults.load()
    log(service, f"release {release()}, faults: {faults.describe()}")
    if faults.crash:
        log(service, "crash fault: exiting with status 1")
        sys.exit(1)
    if faults.boot_delay_s:
        log(service, f"boot delay fault: sleeping {faults.boot_delay_s:g} s")
        time.sleep(faults.boot_delay_s)
    if on_start is not None:
        on_start()

    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", default_port))
    try:
        server = Server((host, port), handler, faults)
    except OSError as exc:
        log(service, f"cannot listen on {host}:{port}: {exc.strerror or exc}")
        sys.exit(1)
    log(service, f"listening on http://{host}:{port}")
    server.serve_forever(poll_interval=0.1)

    server.socket.close()  # new connections are refused from here on
    cut = server.drain(DRAIN_TIMEOUT_S)
    if cut:
        log(service, f"drain timeout: {cut} request(s) still running after {DRAIN_TIMEOUT_S:g} s")
    log(service, "stopped")
    sys.exit(0)
