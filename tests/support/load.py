"""A small load generator for tests: keep-alive clients hammering a URL, counting failures."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    requests: int = 0
    failures: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class Load:
    """Runs `clients` threads, each with one keep-alive connection, until stopped.

    A request fails when it gets no response or a status other than 2xx.
    Bodies are counted when `count_bodies` is set (e.g. /version per release).
    """

    def __init__(
        self, url: str, clients: int = 4, count_bodies: bool = False, max_seconds: float = 300.0
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.clients = clients
        self.count_bodies = count_bodies
        self.max_seconds = max_seconds
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._worker, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return self.result

    def _worker(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read().decode(errors="replace")
                status = response.status
                error = None
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status, body, error = 0, "", type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            with self._lock:
                self.result.requests += 1
                self.result.statuses[status] += 1
                if error or not 200 <= status < 300:
                    self.result.failures += 1
                    if error:
                        self.result.errors[error] += 1
                if self.count_bodies:
                    self.result.bodies[body.strip()] += 1
        if conn is not None:
            conn.close()
