"""A small closed-loop load generator: keep-alive clients hammering a URL.

Used by the end-to-end tests, the demo and the benchmarks. Each client thread
holds one HTTP/1.1 keep-alive connection and sends GETs back to back; a
request fails when it gets no response or a non-2xx status.

One retry is allowed, where HTTP lets a client retry an idempotent request
on its own (RFC 9110 section 9.2.2, RFC 9112 section 9.3.1), as browsers and
Go's net/http do: the connection failed before any byte of a response came
back. Caddy closes idle keep-alive connections on every config change, so
these happen during deploys; they are counted in `retried` (split by whether
the connection was reused or new) and reported, never hidden. A request that
got any response, even an error status, or that fails twice, is a failure.

    python bench/loadgen.py --url http://127.0.0.1:8080/api/version --seconds 10
"""

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
    retried: int = 0  # requests retried after their connection failed before any answer
    retried_on_new: int = 0  # ... of which the failed connection was a new one
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    elapsed: float = 0.0

    def quantile(self, q: float) -> float | None:
        """Latency quantile in milliseconds (nearest rank)."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    def summary(self) -> str:
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        rate = self.requests / self.elapsed if self.elapsed else 0.0
        text = (
            f"{self.requests} requests, {self.failures} failed, {rate:.0f} req/s, "
            f"p50 {p50 or 0:.1f} ms, p99 {p99 or 0:.1f} ms"
        )
        if self.retried:
            text += (
                f", {self.retried} retried after the connection closed unanswered "
                f"({self.retried_on_new} of them on a new connection)"
            )
        if self.errors:
            text += f", errors {dict(self.errors)}"
        return text


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
        self._started = time.monotonic()
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
        if not self.result.elapsed:
            self.result.elapsed = time.monotonic() - self._started
        return self.result

    def _worker(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        conn: http.client.HTTPConnection | None = None
        uses = 0  # requests already answered on `conn`
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            retried = retried_on_new = False
            while True:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                    uses = 0
                answered = False
                try:
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    answered = True
                    body = response.read().decode(errors="replace")
                    status, error = response.status, None
                    uses += 1
                    if response.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as exc:
                    status, body, error = 0, "", type(exc).__name__
                    conn.close()
                    conn = None
                    if not answered and not retried:
                        retried = True
                        retried_on_new = uses == 0
                        continue
                break
            with self._lock:
                self.result.requests += 1
                self.result.retried += retried
                self.result.retried_on_new += retried_on_new
                self.result.statuses[status] += 1
                if not error and 200 <= status < 300:
                    self.result.latencies.append(time.monotonic() - started)
                else:
                    self.result.failures += 1
                    if error:
                        self.result.errors[error] += 1
                if self.count_bodies:
                    self.result.bodies[body.strip()] += 1
        if conn is not None:
            conn.close()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with Load(args.url, clients=args.clients, max_seconds=args.seconds) as load:
        time.sleep(args.seconds)
        result = load.stop()
    print(f"load: {result.summary()}")


if __name__ == "__main__":
    main()
