"""Real router processes (Caddy, HAProxy) and real HTTP backends for the router tests.

The processes are module-scoped: each test module starts its own and every
test uses its own environment name and listen port. Helpers that tests call
directly (`run`, `free_port`, `wait_until`, `who`, `Backend`) are imported
from here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest

from conveyor.paths import Paths
from conveyor.routers.caddy_process import caddy_argv, caddy_env, write_bootstrap_config
from conveyor.routers.haproxy_process import haproxy_answers, haproxy_argv, log_path, prepare

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(every)


# -- Caddy ------------------------------------------------------------------


class CaddyProcess:
    """`caddy run --config bootstrap.json --resume`, as supervisord would run it."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.log = paths.caddy_dir / "caddy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def admin(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.paths.caddy_admin_socket))
        return httpx.Client(transport=transport, base_url="http://localhost", timeout=10)

    def start(self) -> None:
        write_bootstrap_config(self.paths)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                caddy_argv(self.paths),
                env={**os.environ, **caddy_env(self.paths)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with self.admin() as admin:
                    return admin.get("/config/").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def config(self, path: str = "/config/") -> Any:
        with self.admin() as admin:
            return admin.get(path).json()


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaddyProcess]:
    paths = Paths(tmp_path_factory.mktemp("caddy-home")).ensure()
    process = CaddyProcess(paths)
    process.start()
    try:
        yield process
    finally:
        process.stop()


# -- HAProxy ----------------------------------------------------------------


class HAProxyProcess:
    """`haproxy -W -S ... -f haproxy.cfg` (config from the state file), as supervisord runs it."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.log = log_path(paths)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prepare(self.paths)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                haproxy_argv(self.paths), stdout=log, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            return run(haproxy_answers(self.paths))

        wait_until(ready, timeout=15, every=0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def command(self, line: str, *, master: bool = False) -> str:
        """One line on the stats socket (or the master CLI)."""
        target = self.paths.haproxy_master_socket if master else self.paths.haproxy_socket
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(target))
            s.sendall(line.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def workers(self) -> tuple[list[int], list[int]]:
        """(current, old) worker PIDs from the master's `show proc`."""
        current: list[int] = []
        old: list[int] = []
        section = ""
        for line in self.command("show proc", master=True).splitlines():
            if line.startswith("#"):
                section = line.strip("# ").strip()
            elif line.split() and line.split()[0].isdigit():
                {"workers": current, "old workers": old}.get(section, []).append(
                    int(line.split()[0])
                )
        return current, old


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxyProcess]:
    paths = Paths(tmp_path_factory.mktemp("haproxy-home")).ensure()
    process = HAProxyProcess(paths)
    process.start()
    try:
        yield process
    finally:
        process.stop()


# -- Backends ---------------------------------------------------------------


_ASKED = re.compile(r"/(?P<what>sleep|status)/(?P<number>\d+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms per response
    server: Backend

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        """`.../slow` takes 2 s, `.../fail` answers 500, `.../sleep/<ms>` and `.../status/<code>`."""
        self.server.hits[self.path] += 1
        if self.path.endswith("/slow"):
            time.sleep(2)
        status = 500 if self.path.endswith("/fail") else 200
        asked = _ASKED.search(self.path.partition("?")[0])
        if asked is not None and asked["what"] == "sleep":
            time.sleep(int(asked["number"]) / 1000)
        elif asked is not None:
            status = int(asked["number"])
        body = json.dumps(
            {
                "name": self.server.name,
                "path": self.path,
                "host": self.headers.get("Host"),
                "proto": self.headers.get("X-Forwarded-Proto"),
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Backend(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # proxies reset idle connections they close: not worth a traceback

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.hits: Counter[str] = Counter()
        self.address = f"127.0.0.1:{self.server_address[1]}"
        # a short poll interval makes shutdown() quick
        threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True).start()


@pytest.fixture
def backends() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def make(name: str) -> Backend:
        backend = Backend(name)
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.shutdown()
        backend.server_close()


def who(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["name"])
