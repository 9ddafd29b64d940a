"""A real HTTP server in a thread that records what it is sent: webhook, Slack and
GitHub API requests, for the notification tests.

It answers like GitHub's deployments API where the path says so (a new
deployment gets the next id), 200 elsewhere; `fail` makes chosen paths answer
an error (`failures_left`: the next few times), `delay` makes them slow (a delayed
answer is cut short when the receiver stops, so a long delay never outlives its test).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            self.server.received.append(Received("POST", self.path, headers, body))
            delay = self.server.delay.get(self.path, 0.0)
            status = self.server.fail.get(self.path)
            if self.server.failures_left.get(self.path, 0) > 0:
                self.server.failures_left[self.path] -= 1
                status = 503
            answer: Any = {}
            if status is None and self.path.endswith("/deployments"):
                self.server.next_id += 1
                status, answer = 201, {"id": self.server.next_id}
            elif status is None:
                status = 201 if self.path.endswith("/statuses") else 200
            else:
                answer = {"message": "the receiver was told to fail"}
        if delay:
            self.server.released.wait(delay)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.fail: dict[str, int] = {}  # path -> the status to answer
        self.failures_left: dict[str, int] = {}  # path -> how many more times to answer 503
        self.delay: dict[str, float] = {}  # path -> seconds before answering
        self.released = threading.Event()  # set when the receiver stops: delays end
        self.next_id = 100

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on a slow answer closed early: that is the point

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.received]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {self.paths()}")


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join()
