"""End to end: an accessory (Debian's real redis-server, on its own port and data
directory) started by a deploy, used by a service through `${accessories.redis.url}`,
kept across redeploys, restarted with its data, stopped, and its errors."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.project import Project, free_port, git_project

pytestmark = pytest.mark.slow

# A service that keeps counters in Redis, speaking RESP itself (no client library).
APP = """\
import os, socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

url = urlsplit(os.environ["REDIS_URL"])

def redis(*args):
    words = [a.encode() for a in args]
    request = b"*%d\\r\\n" % len(words) + b"".join(b"$%d\\r\\n%s\\r\\n" % (len(w), w) for w in words)
    with socket.create_connection((url.hostname, url.port), timeout=5) as s:
        s.sendall(request)
        answer = s.makefile("rb")
        head = answer.readline()
        if head.startswith(b"$-1"):
            return ""
        if head.startswith(b"$"):
            return answer.read(int(head[1:]) + 2)[:-2].decode()
        return head[1:].strip().decode()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/health":
            body = "ok"
        elif parts.path == "/set":
            body = redis("SET", query["k"], query["v"])
        elif parts.path == "/get":
            body = redis("GET", query["k"])
        elif parts.path == "/version":
            body = VERSION
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

VERSION = "v1"
ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def config(listen: str, errs_listen: str, port: int, blocked: int) -> str:
    return textwrap.dedent(
        f"""\
        project: acc
        accessories:
          redis:
            run: [redis-server, --bind, $HOST, --port, $PORT, --dir, $DATA_DIR,
                  --appendonly, "yes", --save, "60 1"]
            port: {port}
            url: "redis://{{host}}:{{port}}/0"
          blocked:
            run: [python3, -c, "import time; time.sleep(600)"]
            port: {blocked}
          broken:
            run: 'echo "starting with $BROKEN_PASSWORD"; exit 3'
            env: {{BROKEN_PASSWORD: hunter2-planted-secret}}
            start_timeout: 10s
        services:
          web:
            run: [python3, app.py]
            env: {{REDIS_URL: "${{accessories.redis.url}}"}}
            health: {{type: http, path: /health, interval: 200ms}}
        environments:
          staging:
            listen: {listen}
            accessories: {{blocked: false, broken: false}}
          errs:
            listen: {errs_listen}
            accessories: {{redis: false}}
            services: {{web: {{env: {{REDIS_URL: "redis://127.0.0.1:1/0"}}}}}}
        """
    )


PORTS: dict[str, int] = {}  # the accessories' own ports, chosen free for this run


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    tmp = tmp_path_factory.mktemp("accessories")
    root = tmp / "acc"
    root.mkdir()
    (root / "app.py").write_text(APP)
    PORTS.update(redis=free_port(), blocked=free_port())
    listens = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
    (root / "conveyor.yml").write_text(config(*listens, PORTS["redis"], PORTS["blocked"]))
    shop = git_project(root, tmp / "home")
    try:
        yield shop
    finally:
        shop.shutdown()


def get(project: Project, path: str) -> str:
    listen = project.json("status", "staging")["environments"][0]["listen"]  # type: ignore[index]
    with urllib.request.urlopen(f"http://{listen}{path}", timeout=10) as answer:
        return str(answer.read().decode())


def redis_pid(port: int) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "server"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return int(
        next(line.split(":")[1] for line in out.splitlines() if line.startswith("process_id"))
    )


def accessory(project: Project, name: str = "redis") -> dict[str, Any]:
    listed = project.json("accessory", "list", "staging")
    return next(a for a in listed["accessories"] if a["name"] == name)  # type: ignore[index]


def test_a_deploy_starts_it_before_the_service(project: Project) -> None:
    port = PORTS["redis"]
    assert port != 6379
    plan = project.run("deploy", "staging", "--build", "--dry-run").stdout
    lines = plan.splitlines()
    start_redis = next(i for i, line in enumerate(lines) if "start accessory redis" in line)
    start_web = next(i for i, line in enumerate(lines) if "start staging-web" in line)
    assert start_redis < start_web, plan
    assert "blocked" not in plan and "broken" not in plan  # staging leaves them out

    project.run("deploy", "staging")
    deployment = project.json("history", "staging")[0]["id"]  # type: ignore[index]
    assert "start accessory redis (not running)" in project.run("explain", deployment).stdout
    found = accessory(project)
    assert found["process"] == "running"
    assert found["port"] == port
    assert found["url"] == f"redis://127.0.0.1:{port}/0"
    assert redis_pid(port) == found["pid"]
    data = Path(found["data_dir"])
    assert data.is_dir() and data.stat().st_mode & 0o777 == 0o700
    # The service reaches it through ${accessories.redis.url} in its env.
    assert get(project, "/set?k=greeting&v=hello") == "OK"
    assert get(project, "/get?k=greeting") == "hello"


def test_a_redeploy_keeps_it_running_with_its_data(project: Project) -> None:
    port = PORTS["redis"]
    pid = redis_pid(port)
    app = project.root / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    project.commit("v2")
    out = project.run("deploy", "staging", "--build")
    assert "accessory" not in out.stdout + out.stderr  # nothing to start: it runs
    assert get(project, "/version") == "v2"
    assert redis_pid(port) == pid
    assert get(project, "/get?k=greeting") == "hello"

    status = project.json("status", "staging")["environments"][0]  # type: ignore[index]
    (shown,) = status["accessories"]
    assert (shown["name"], shown["kind"], shown["process"], shown["pid"]) == (
        "redis",
        "accessory",
        "running",
        pid,
    )
    assert "redis accessory" in project.run("status", "staging").stdout


def test_a_changed_config_is_reported_not_applied_until_restart(project: Project) -> None:
    port = PORTS["redis"]
    pid = redis_pid(port)
    path = project.root / "conveyor.yml"
    original = path.read_text()
    path.write_text(original.replace('--save, "60 1"]', '--save, "30 1"]'))
    project.commit("redis saves more often")
    deployed = project.run("deploy", "staging")  # nothing else changed: nothing to start
    assert "with a config other than conveyor.yml's" in deployed.stderr
    assert "start accessory" not in deployed.stdout + deployed.stderr
    assert redis_pid(port) == pid
    again = project.run("accessory", "start", "staging", "redis")
    assert "with a config other than conveyor.yml's" in again.stderr
    assert "conveyor accessory restart staging redis" in again.stderr
    assert redis_pid(port) == pid

    restarted = project.run("accessory", "restart", "staging", "redis")
    assert "started accessory redis" in restarted.stdout
    new_pid = redis_pid(port)
    assert new_pid != pid
    # The data survived the restart (AOF in its data directory).
    assert get(project, "/get?k=greeting") == "hello"
    again = project.run("accessory", "start", "staging", "redis")
    assert "already runs" in again.stdout
    assert redis_pid(port) == new_pid
    path.write_text(original)
    project.commit("back")


def test_logs_stop_and_start(project: Project) -> None:
    port = PORTS["redis"]
    logs = project.run("accessory", "logs", "staging", "redis", "-n", "50").stdout
    assert "Ready to accept connections" in logs

    stopped = project.run("accessory", "stop", "staging", "redis")
    assert "stopped accessory redis" in stopped.stdout
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert accessory(project)["process"] == "stopped"
    status = project.json("status", "staging")["environments"][0]  # type: ignore[index]
    assert status["accessories"][0]["process"] == "stopped"
    again = project.run("accessory", "stop", "staging", "redis")
    assert "was not running" in again.stdout

    project.run("accessory", "start", "staging", "redis")
    assert accessory(project)["port"] == port  # kept
    assert get(project, "/get?k=greeting") == "hello"


def test_errors_name_what_is_wrong(project: Project) -> None:
    unknown = project.run("accessory", "start", "staging", "memcached", check=False)
    assert unknown.returncode != 0
    assert 'unknown accessory "memcached"' in unknown.stderr
    assert "Traceback" not in unknown.stderr
    disabled = project.run("accessory", "start", "staging", "blocked", check=False)
    assert "environments/staging/accessories/blocked is false" in disabled.stderr

    # The port of `blocked` is taken by this test: the error names the holder.
    blocked_port = PORTS["blocked"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", blocked_port))
        holder.listen()
        taken = project.run("accessory", "start", "errs", "blocked", check=False)
    assert taken.returncode != 0
    assert f"port {blocked_port} on this machine is in use by pid" in taken.stderr
    assert "python" in taken.stderr

    # A program that exits at once: its log's tail, with the secret masked.
    broken = project.run("accessory", "start", "errs", "broken", check=False, timeout=120)
    assert broken.returncode != 0
    assert "accessory broken of errs did not start" in broken.stderr
    assert "starting with" in broken.stderr
    assert "hunter2-planted-secret" not in broken.stderr
    listed = project.json("accessory", "list", "errs")
    states = {a["name"]: a["process"] for a in listed["accessories"]}  # type: ignore[index]
    assert states["broken"] == "stopped"


def test_down_leaves_it_running(project: Project) -> None:
    port = PORTS["redis"]
    pid = redis_pid(port)
    project.run("down", "staging", "--yes")
    assert redis_pid(port) == pid
    status = json.loads(project.run("status", "staging", "--json").stdout)["environments"][0]
    assert status["accessories"][0]["process"] == "running"
    assert not status["services"][0]["instances"]


def test_shutdown_stops_it_and_keeps_its_data(project: Project) -> None:
    port = PORTS["redis"]
    pid = redis_pid(port)
    data = Path(accessory(project)["data_dir"])
    report = json.loads(project.run("shutdown", "--yes", "--json").stdout)
    assert {"kind": "accessory", "name": "accessory.staging.redis", "pid": pid, "gone": True} in (
        report["stopped"]
    )
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert (data / "appendonlydir").is_dir()
    project.run("accessory", "start", "staging", "redis")
    assert redis_pid(port) != pid
    assert (
        subprocess.run(
            ["redis-cli", "-p", str(port), "GET", "greeting"], capture_output=True, text=True
        ).stdout.strip()
        == "hello"
    )
