"""The shop example app, run as real processes the way a release runs them."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shop:
    """One service of the shop, copied alone into a release-like directory and started."""

    def __init__(self, tmp_path: Path, service: str, faults: dict | None = None, **env: str):
        self.dir = tmp_path / f"{service}-release-{len(list(tmp_path.glob(f'{service}-*')))}"
        shutil.copytree(
            SHOP / service, self.dir, ignore=shutil.ignore_patterns("dist", "__pycache__")
        )
        # What the release build's `include: [shared/shopkit.py]` does.
        shutil.copy(SHOP / "shared" / "shopkit.py", self.dir / "shopkit.py")
        if faults is not None:
            (self.dir / "faults.json").write_text(json.dumps(faults))
        self.port = free_port()
        self.env = {
            "PATH": "/usr/bin:/bin",
            "PORT": str(self.port),
            "DATA_DIR": str(tmp_path / "data"),
            "CONVEYOR_RELEASE": "r-test-1",
            "CONVEYOR_ENV": "staging",
            **env,
        }
        self.proc: subprocess.Popen[str] | None = None

    def build(self) -> None:
        subprocess.run([sys.executable, "build.py"], cwd=self.dir, env=self.env, check=True)

    def start(self, wait: bool = True) -> Shop:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "server.py"],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 10) -> float:
        """Seconds from start until the port answers HTTP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()}")
            try:
                self.request("GET", "/health")
                return time.monotonic() - self.started
            except OSError:
                time.sleep(0.02)
        raise AssertionError("server did not start")

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = self.connection()
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.read(), response
        finally:
            conn.close()

    def json(self, method: str, path: str) -> dict:
        status, body, _ = self.request(method, path)
        assert status == 200, body
        return json.loads(body)

    def wait_exit(self, timeout: float = 10) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.communicate()[0]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def shop(tmp_path):
    started: list[Shop] = []

    def make(service: str = "api", faults: dict | None = None, build: bool = True, **env: str):
        app = Shop(tmp_path, service, faults, **env)
        if service == "web" and build:
            app.build()
        started.append(app)
        return app

    yield make
    for app in started:
        app.stop()


# --- api


def test_api_endpoints(shop):
    api = shop().start()
    for prefix in ("", "/api"):
        status, body, response = api.request("GET", f"{prefix}/health")
        assert (status, body) == (200, b"ok")
        assert response.getheader("Content-Length") == "2"
        version = api.json("GET", f"{prefix}/version")
        assert version == {
            "release": "r-test-1",
            "environment": "staging",
            "service": "api",
            "pid": api.proc.pid,
        }
    assert api.json("GET", "/counter") == {"count": 0}
    assert api.json("POST", "/counter") == {"count": 1}
    assert api.json("POST", "/api/counter") == {"count": 2}
    assert api.json("GET", "/api/counter") == {"count": 2}
    status, page, response = api.request("GET", "/")
    assert status == 200
    assert response.getheader("Content-Type").startswith("text/html")
    assert b"r-test-1" in page and b"<strong>2</strong>" in page
    assert api.request("GET", "/api/")[0] == 200
    assert api.request("GET", "/nope")[0] == 404
    status, body, _ = api.request("GET", "/slow?ms=200")
    assert (status, body) == (200, b"slept 200 ms\n")
    assert api.request("GET", "/slow?ms=soon")[0] == 400
    status, body, response = api.request("HEAD", "/health")
    assert (status, body, response.getheader("Content-Length")) == (200, b"", "2")

    log = api.output()
    assert "listening on http://127.0.0.1:" in log
    assert '"POST /api/counter" 200' in log
    assert '"GET /slow?ms=200" 200' in log


def test_api_keeps_connections_alive(shop):
    api = shop().start()
    conn = api.connection()
    try:
        for path in ("/health", "/version", "/counter", "/nope"):
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.getheader("Content-Length") is not None
            response.read()
            assert not response.will_close
        conn.request("POST", "/counter", body=b'{"ignored": true}')
        assert json.loads(conn.getresponse().read()) == {"count": 1}
        conn.request("GET", "/counter")
        assert json.loads(conn.getresponse().read()) == {"count": 1}
    finally:
        conn.close()


def test_api_instances_share_the_counter(shop):
    first, second = shop().start(), shop().start()
    posts_each = 40

    def hammer(app: Shop) -> None:
        conn = app.connection()
        for _ in range(posts_each):
            conn.request("POST", "/counter")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.close()

    threads = [threading.Thread(target=hammer, args=(app,)) for app in (first, second) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.json("GET", "/counter") == {"count": 4 * posts_each}
    assert second.json("GET", "/counter") == {"count": 4 * posts_each}


def test_sigterm_lets_an_in_flight_request_finish(shop):
    api = shop().start()
    idle = api.connection()
    idle.request("GET", "/health")
    idle.getresponse().read()  # now an idle keep-alive connection

    result: dict[str, object] = {}

    def slow() -> None:
        status, body, response = api.request("GET", "/slow?ms=1500")
        result.update(status=status, body=body, connection=response.getheader("Connection"))

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.4)
    api.proc.send_signal(signal.SIGTERM)
    time.sleep(0.4)

    with pytest.raises(ConnectionRefusedError):
        api.request("GET", "/health")
    # The idle keep-alive connection was closed cleanly: end of stream, no reset.
    idle.sock.settimeout(2)
    assert idle.sock.recv(1) == b""
    idle.close()
    assert api.proc.poll() is None  # still serving the slow request

    thread.join()
    assert result == {"status": 200, "body": b"slept 1500 ms\n", "connection": "close"}
    assert api.wait_exit(5) == 0
    log = api.output()
    assert "draining" in log and "stopped" in log


def test_sigterm_on_an_idle_server_exits_at_once(shop):
    api = shop().start()
    idle = api.connection()
    idle.request("GET", "/health")
    idle.getresponse().read()  # an idle keep-alive connection: nothing to wait for
    try:
        start = time.monotonic()
        api.proc.send_signal(signal.SIGTERM)
        # Waiting for the idle connection would take the 30 s drain timeout.
        assert api.wait_exit(15) == 0
        assert time.monotonic() - start < 15
    finally:
        idle.close()
    assert "drain timeout" not in api.output()


# --- faults


def test_fault_boot_delay(shop):
    api = shop(faults={"boot_delay_s": 1.0}).start(wait=False)
    assert api.wait_listening() >= 1.0
    assert 'boot_delay_s": 1.0' in api.output()


def test_fault_health_fail(shop):
    api = shop(faults={"health": "fail"}).start()
    status, body, _ = api.request("GET", "/api/health")
    assert status == 503
    assert b"health=fail" in body
    assert api.request("GET", "/version")[0] == 200


def test_fault_error_rate(shop):
    api = shop(faults={"error_rate": 1.0}).start()
    assert api.request("GET", "/health")[0] == 200
    for path in ("/version", "/counter", "/"):
        status, body, _ = api.request("GET", path)
        assert status == 500
        assert b"error_rate" in body


def test_fault_fail_after_requests(shop):
    api = shop(faults={"fail_after_requests": 2}).start()
    assert [api.request("GET", "/version")[0] for _ in range(2)] == [200, 200]
    assert api.request("GET", "/health")[0] == 200  # health checks do not count
    status, body, _ = api.request("GET", "/version")
    assert status == 500 and b"fail_after_requests" in body
    assert api.request("GET", "/health")[0] == 200


def test_fault_latency(shop):
    # A minute: a delayed health check could not pass for a quick one, whatever the load.
    api = shop(faults={"latency_ms": 60_000}).start()
    start = time.monotonic()
    assert api.request("GET", "/health")[0] == 200
    assert time.monotonic() - start < 15
    slow = api.connection(timeout=0.5)
    try:
        slow.request("GET", "/counter")
        with pytest.raises(TimeoutError):  # still sleeping off its minute
            slow.getresponse()
    finally:
        slow.close()


def test_fault_crash(shop):
    api = shop(faults={"crash": True}).start(wait=False)
    assert api.wait_exit(30) == 1  # a server that ignored the fault would never exit
    log = api.output()
    assert "crash fault" in log
    assert "listening on" not in log  # right after start: it never served


def test_invalid_faults_file_is_refused(shop):
    api = shop(faults={"error_rate": 2, "typo": 1}).start(wait=False)
    assert api.wait_exit(5) == 2
    assert "invalid faults file: unknown keys ['typo']" in api.output()


def test_port_in_use_exits_1(shop):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        api = shop(PORT=str(taken.getsockname()[1])).start(wait=False)
        assert api.wait_exit(5) == 1
    assert "cannot listen on 127.0.0.1:" in api.output()


# --- web


def test_web_build_stamps_the_release(shop):
    web = shop("web", CONVEYOR_RELEASE="r-<7>")
    index = (web.dir / "dist" / "index.html").read_text()
    assert '<meta name="release" content="r-&lt;7&gt;">' in index
    assert "{{release}}" not in index
    assert json.loads((web.dir / "dist" / "build.json").read_text()) == {"release": "r-<7>"}


def test_web_build_without_release_says_dev(shop):
    web = shop("web", build=False)
    del web.env["CONVEYOR_RELEASE"]
    web.build()
    assert '<dd id="web-release">dev</dd>' in (web.dir / "dist" / "index.html").read_text()


def test_web_endpoints(shop):
    web = shop("web").start()
    status, page, response = web.request("GET", "/")
    assert status == 200
    assert response.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"r-test-1" in page and b"/api/version" in page and b"/api/counter" in page
    assert web.request("GET", "/index.html")[1] == page
    assert web.request("GET", "/health")[:2] == (200, b"ok")
    assert web.json("GET", "/version") == {
        "release": "r-test-1",
        "environment": "staging",
        "service": "web",
        "pid": web.proc.pid,
        "built_for": "r-test-1",
    }
    assert web.request("GET", "/missing.js")[0] == 404
    assert web.request("GET", "/../server.py")[0] == 404
    assert web.request("GET", "/%2e%2e/server.py")[0] == 404
    assert web.request("POST", "/")[0] == 404


def test_web_without_build_is_unhealthy(shop):
    web = shop("web", build=False).start()
    status, body, _ = web.request("GET", "/health")
    assert status == 503
    assert b"build.py" in body


def test_web_sigterm_drains(shop):
    web = shop("web", faults={"latency_ms": 800}).start()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(web.request("GET", "/")[0]))
    thread.start()
    time.sleep(0.3)
    web.proc.send_signal(signal.SIGTERM)
    thread.join()
    assert result == [200]
    assert web.wait_exit(5) == 0


def test_web_faults(shop):
    web = shop("web", faults={"health": "fail", "error_rate": 1.0}).start()
    assert web.request("GET", "/health")[0] == 503
    assert web.request("GET", "/")[0] == 500


def test_shop_imports_only_the_standard_library():
    """Plain python3 runs the shop. Only its PostgreSQL variant needs more: psycopg, imported
    where it is used and only with DATABASE_URL=postgresql://, and Alembic for its
    migrations (api/migrations/); its own tests (tests/) run with pytest."""
    import ast

    migrations = SHOP / "api" / "migrations"
    own_tests = SHOP / "tests"  # run by the shop's pipeline, with pytest
    for file in SHOP.rglob("*.py"):
        if migrations in file.parents or own_tests in file.parents:
            continue
        local = {p.stem for p in file.parent.glob("*.py")} | {"shopkit"}
        tree = ast.parse(file.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "psycopg" and id(node) not in top_level:
                    continue  # the PostgreSQL variant's driver, imported where used
                assert top in sys.stdlib_module_names or top in local, f"{file}: {name}"
