"""A small closed-loop load generator: keep-alive clients hammering a URL.

Used by the end-to-end tests, the demo and the benchmarks. Each client thread
holds one HTTP/1.1 keep-alive connection and sends GETs back to back; a
request fails when it gets no response or a non-2xx status.

Retries are allowed where HTTP lets a client retry an idempotent request on
its own (RFC 9110 section 9.2.2, RFC 9112 section 9.3.1): the connection
failed before any byte of a response came back. Caddy closes idle keep-alive
connections on every config change, and a connection it accepts at that
instant can be closed unanswered too, so a retry sent at once can meet the
same reload; a request is sent at most `ATTEMPTS` times, like
tests/routers/keepalive_load.py, each retry on a new connection (the other
idle ones may be closing in the same reload). Retries are counted in `retried` (split by
whether the failed connection was reused or new, and how many requests
needed a second retry) and reported, never hidden. Before reusing an idle
connection the client checks that the server has not closed it, as browsers
and Go's net/http do. A request that got any response, even an error
status, or no answer `ATTEMPTS` times, is a failure.

`OpenLoad` is the open-loop variant the canary and rollback benchmarks use:
requests start at a fixed rate whatever the answers' latency (a slow
release never slows the load down), each on an idle keep-alive connection
or a new one, and every request is recorded with its time and the value of
a response header (`X-Release`: which release answered it).

    python bench/loadgen.py --url http://127.0.0.1:8080/api/version --seconds 10
    python bench/loadgen.py --url http://127.0.0.1:8080/api/version --rate 200 --header X-Release
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import select
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

ATTEMPTS = 3  # sends of a request whose connection closed unanswered (see above)


@dataclass
class LoadResult:
    requests: int = 0
    failures: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # requests retried after their connection failed before any answer
    retried_on_new: int = 0  # ... of which the failed connection was a new one
    retried_twice: int = 0  # ... of which the first retry went unanswered too
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
                f"({self.retried_on_new} of them on a new connection, "
                f"{self.retried_twice} twice)"
            )
        if self.errors:
            text += f", errors {dict(self.errors)}"
        return text


class Load:
    """Runs `clients` threads, each with one keep-alive connection, until stopped.

    A request fails when it gets no response or a status other than 2xx.
    Bodies are counted when `count_bodies` is set (e.g. /version per release).
    With `post`, each request is a POST (JSON) of the body `post()` returns, the same
    bytes on each retry: the caller makes it idempotent (a unique reference the server
    deduplicates), so the retry rule above holds for it too.
    With `rate`, the clients together send about `rate` requests per second
    (each waits for its next slot; one that falls behind sends at once);
    without it they send back to back, as fast as the server answers.
    """

    def __init__(
        self,
        url: str,
        clients: int = 4,
        count_bodies: bool = False,
        max_seconds: float = 300.0,
        rate: float | None = None,
        post: Callable[[], bytes] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.post = post
        self.host = parts.hostname or "127.0.0.1"
        # an https URL: TLS with `ssl_context` (the default context when None)
        self.tls = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        self.port = parts.port or (443 if self.tls else 80)
        self.path = parts.path or "/"
        self.clients = clients
        self.count_bodies = count_bodies
        self.max_seconds = max_seconds
        self.interval = clients / rate if rate else 0.0  # seconds between one client's sends
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
        next_send = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            if self.interval:
                wait = next_send - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                next_send = max(next_send + self.interval, time.monotonic() - self.interval)
            started = time.monotonic()
            attempts = 0
            retried_on_new = False
            body_out = self.post() if self.post else None
            while True:
                attempts += 1
                if conn is not None and _closed_by_peer(conn):
                    # The server closed this idle connection: open a new one, as
                    # browsers and Go's net/http do, instead of sending into it.
                    conn.close()
                    conn = None
                if conn is None:
                    if self.tls is not None:
                        conn = http.client.HTTPSConnection(
                            self.host, self.port, timeout=10, context=self.tls
                        )
                    else:
                        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                    uses = 0
                answered = False
                try:
                    if body_out is None:
                        conn.request("GET", self.path)
                    else:
                        headers = {"Content-Type": "application/json"}
                        conn.request("POST", self.path, body_out, headers)
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
                    if conn is not None:
                        conn.close()
                    conn = None
                    if not answered and attempts < ATTEMPTS:
                        retried_on_new = retried_on_new or uses == 0
                        continue
                break
            with self._lock:
                self.result.requests += 1
                self.result.retried += attempts > 1
                self.result.retried_on_new += retried_on_new
                self.result.retried_twice += attempts > 2
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


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection has been closed by the server.

    An idle HTTP/1.1 connection has nothing to read until the next request;
    readable means the server sent its FIN (or garbage): either way, unusable.
    """
    sock = conn.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


class Sample(NamedTuple):
    """One request of an `OpenLoad`. Times are wall-clock seconds (`OpenLoad.clock()`)."""

    due: float  # when the schedule said to send it
    sent: float  # when it was sent (late when the generator could not keep up)
    done: float  # when its answer ended, or when it failed
    status: int  # 0: no answer
    header: str  # the tracked response header ("" when absent)
    error: str  # "" or why there was no answer
    retried: bool  # its connection closed before any answer: sent again (< ATTEMPTS times)

    @property
    def ok(self) -> bool:
        return not self.error and 200 <= self.status < 300


@dataclass
class OpenLoadResult:
    """Every request of an `OpenLoad`: while it runs, in the order they ended; after
    `OpenLoad.stop`, in the order they were due."""

    rate: float  # requests per second asked for
    header: str  # the response header that was recorded
    started: float  # wall clock of the first due time
    elapsed: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    connections: int = 0  # connections opened
    max_in_flight: int = 0

    def between(self, start: float = float("-inf"), end: float = float("inf")) -> list[Sample]:
        """The requests due in [start, end)."""
        return [s for s in self.samples if start <= s.due < end]

    def by_header(self, samples: list[Sample] | None = None) -> Counter[str]:
        return Counter(s.header for s in (self.samples if samples is None else samples))

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> int:
        return sum(not s.ok for s in self.samples)

    def achieved_rate(self) -> float:
        """Requests per second actually sent (first to last send)."""
        if len(self.samples) < 2:
            return 0.0
        span = self.samples[-1].sent - self.samples[0].sent
        return (len(self.samples) - 1) / span if span > 0 else 0.0

    def lateness_ms(self, q: float) -> float:
        """Quantile of send time minus due time: how far the generator fell behind."""
        if not self.samples:
            return 0.0
        ordered = sorted(s.sent - s.due for s in self.samples)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    def latency_ms(self, q: float) -> float:
        """Quantile of the latency of successful requests (from due time to answer)."""
        ordered = sorted(s.done - s.due for s in self.samples if s.ok)
        if not ordered:
            return 0.0
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    def summary(self) -> str:
        text = (
            f"{self.requests} requests at {self.achieved_rate():.0f} req/s (asked "
            f"{self.rate:g}), {self.failures} failed, p50 {self.latency_ms(0.5):.1f} ms, "
            f"p99 {self.latency_ms(0.99):.1f} ms, sent late by p99 {self.lateness_ms(0.99):.1f} "
            f"ms / max {self.lateness_ms(1.0):.1f} ms, {self.connections} connections "
            f"(max {self.max_in_flight} in flight)"
        )
        retried = sum(s.retried for s in self.samples)
        if retried:
            text += f", {retried} retried after the connection closed unanswered"
        errors = Counter(s.error for s in self.samples if s.error)
        if errors:
            text += f", errors {dict(errors)}"
        return text


class _Unanswered(Exception):
    """The connection failed before any byte of an answer: the request may be sent again."""


class OpenLoad:
    """Open-loop load: request n is due at start + n / rate, whatever came back before.

    Runs an asyncio loop in a thread. A due request takes an idle keep-alive
    connection or opens a new one, so slow answers add connections instead
    of delaying the next requests. Every request is recorded as a `Sample`
    with the value of `header` in its answer; the retry rule is `Load`'s
    (up to `ATTEMPTS` sends when the connection failed before any answer;
    timeouts are not retried). `clock()` is the time base of the samples: wall-clock
    seconds, advanced by the monotonic clock, so it compares with the
    timestamps Conveyor records.
    """

    def __init__(
        self,
        url: str,
        rate: float,
        *,
        header: str = "X-Release",
        timeout: float = 10.0,
        max_seconds: float = 1800.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be above 0")
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.rate = rate
        self.header = header
        self.timeout = timeout
        self.max_seconds = max_seconds
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "User-Agent: conveyor-bench\r\nAccept: */*\r\n\r\n"
        ).encode()
        self._mono0 = time.monotonic()
        self._wall0 = time.time()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._in_flight = 0
        self.result = OpenLoadResult(rate=rate, header=header, started=self.clock())

    def clock(self) -> float:
        """Now, on the samples' time base."""
        return self._wall0 + (time.monotonic() - self._mono0)

    def _wall(self, mono: float) -> float:
        return self._wall0 + (mono - self._mono0)

    def __enter__(self) -> OpenLoad:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, daemon=True, name="open-load")
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> OpenLoadResult:
        """Stop sending; wait for the requests in flight (at most `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 10)
        self.result.samples.sort(key=lambda s: s.due)  # they were recorded as they ended
        return self.result

    def _main(self) -> None:
        asyncio.run(self._schedule())

    async def _schedule(self) -> None:
        interval = 1.0 / self.rate
        start = time.monotonic()
        self.result.started = self._wall(start)
        deadline = start + self.max_seconds
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        self._ready.set()
        while not self._stop.is_set():
            due = start + n * interval
            if due > deadline:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            task = asyncio.create_task(self._one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            if n % 64 == 0:
                await asyncio.sleep(0)  # behind schedule: still let answers in
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 1)
        for _, writer in self._idle:
            writer.close()
        self.result.elapsed = time.monotonic() - start

    async def _one(self, due: float) -> None:
        sent = time.monotonic()
        self._in_flight += 1
        self.result.max_in_flight = max(self.result.max_in_flight, self._in_flight)
        status, value, error, attempts = 0, "", "", 0
        try:
            while True:
                attempts += 1
                try:
                    async with asyncio.timeout(self.timeout):
                        # A retry opens a new connection: the idle ones may be closing
                        # in the same reload as the one that failed.
                        status, value = await self._exchange(fresh=attempts > 1)
                except _Unanswered as exc:
                    if attempts < ATTEMPTS:
                        continue
                    error = str(exc)
                except TimeoutError:
                    error = "timeout"
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    error = type(exc).__name__
                break
        finally:
            self._in_flight -= 1
        self.result.samples.append(
            Sample(
                due=self._wall(due),
                sent=self._wall(sent),
                done=self.clock(),
                status=status,
                header=value,
                error=error,
                retried=attempts > 1,
            )
        )

    async def _connection(
        self, fresh: bool = False
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle and not fresh:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        self.result.connections += 1
        return await asyncio.open_connection(self.host, self.port)

    async def _exchange(self, fresh: bool = False) -> tuple[int, str]:
        """One request on one connection (a new one if `fresh`): (status, header value)."""
        try:
            reader, writer = await self._connection(fresh)
        except OSError as exc:
            raise _Unanswered(type(exc).__name__) from exc
        keep = False
        try:
            try:
                writer.write(self._request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                raise _Unanswered("closed unanswered") from exc
            except ConnectionError as exc:
                raise _Unanswered(type(exc).__name__) from exc
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            keep = headers.get("connection", "").lower() != "close"
            if "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers
                        break
                    await reader.readexactly(size + 2)
            elif "content-length" in headers:
                await reader.readexactly(int(headers["content-length"]))
            elif status not in (204, 304):
                await reader.read()  # the body ends with the connection
                keep = False
            return status, headers.get(self.header.lower(), "")
        finally:
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--rate", type=float, help="open loop: this many requests per second (ignores --clients)"
    )
    parser.add_argument(
        "--header", default="X-Release", help="open loop: count answers by this header"
    )
    args = parser.parse_args()
    if args.rate:
        with OpenLoad(args.url, args.rate, header=args.header) as open_load:
            time.sleep(args.seconds)
            opened = open_load.stop()
        print(f"load: {opened.summary()}")
        for value, count in opened.by_header().most_common():
            print(f"  {args.header} {value or '(none)'}: {count}")
        return
    with Load(args.url, clients=args.clients, max_seconds=args.seconds) as load:
        time.sleep(args.seconds)
        result = load.stop()
    print(f"load: {result.summary()}")


if __name__ == "__main__":
    main()
