"""End to end, `conveyor server`: a real uvicorn on a free loopback port, a real
project deployed through the API (supervisord, Caddy, the app), read back with
another token, the audit naming who did it, and the CLI's tokens honoured at once.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.apps import SERVER, make_app
from tests.support.dashboard import answers, call, wait_for
from tests.support.project import Project, free_port

pytestmark = pytest.mark.slow

CONFIG = """\
project: api
services:
  web:
    run: [python3, server.py, --port, $PORT]
    route: {path: /}
    health: {type: http, path: /health, interval: 100ms}
environments:
  staging:
    listen: ${LISTEN}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Project, str, subprocess.Popen[str]]]:
    project = make_app(tmp_path, CONFIG, {"server.py": SERVER})
    port = free_port()
    server = project.start("server", "--listen", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the server to answer /healthz",
            lambda: server.poll() is None and answers(base + "/healthz"),
        )
        yield project, base, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        project.shutdown()


def token(project: Project, name: str, role: str) -> str:
    made = project.run("tokens", "create", "--name", name, "--role", role, "--env", "staging")
    assert f"token {name} ({role}, staging)" in made.stderr
    return made.stdout.strip()


def test_deploy_through_the_api_and_read_it_back(
    served: tuple[Project, str, subprocess.Popen[str]],
) -> None:
    project, base, server = served
    project.run("build")
    deployer = token(project, "ci", "deployer")
    viewer = token(project, "dashboard", "viewer")
    assert deployer.startswith("cvt_") and deployer != viewer
    stored = (project.home / "state.db").read_bytes()
    assert deployer.encode() not in stored  # only its hash

    assert call(base, "POST", "/api/environments/staging/deploy", viewer, {})[0] == 403
    status, started = call(base, "POST", "/api/environments/staging/deploy", deployer, {})
    assert status in (200, 202), started
    deployment = started["id"]
    assert started["user"] == "ci" and started["environment"] == "staging"

    def finished() -> Any:
        status, explained = call(base, "GET", f"/api/deployments/{deployment}", viewer)
        assert status == 200, explained
        return explained if explained["status"] not in ("running", "pending") else None

    explained = wait_for("the deployment to finish", finished, timeout=120)
    assert explained["status"] == "succeeded", explained
    listen = project.env["LISTEN"]
    with urllib.request.urlopen(f"http://{listen}/", timeout=10) as answer:
        assert answer.read().startswith(b"answer 200")

    status, history = call(base, "GET", "/api/environments/staging/deployments", viewer)
    assert status == 200 and history[0]["id"] == deployment and history[0]["user"] == "ci"
    assert history == json.loads(project.run("history", "staging", "--json").stdout)
    status, report = call(base, "GET", "/api/environments/staging", viewer)
    web = report["environments"][0]["services"][0]
    assert web["release"] == history[0]["releases"]["web"] and web["healthy"] == 1

    audit = json.loads(project.run("audit", "--json").stdout)
    assert [(a["token"], a["path"], a["status"]) for a in reversed(audit)] == [
        ("dashboard", "/api/environments/staging/deploy", 403),
        ("ci", "/api/environments/staging/deploy", status_of(started, status)),
    ]
    assert audit[0]["deployment_id"] == deployment

    project.run("tokens", "revoke", "dashboard")
    assert call(base, "GET", "/api/environments", viewer)[0] == 401
    listed = {t["name"]: t for t in json.loads(project.run("tokens", "list", "--json").stdout)}
    assert listed["dashboard"]["state"] == "revoked" and listed["ci"]["last_used_at"]
    assert server.poll() is None


def status_of(started: Any, status: int) -> int:
    return 202 if started["status"] == "running" else 200


def test_server_start_runs_it_under_supervisord_and_stop_ends_it(tmp_path: Path) -> None:
    project = make_app(tmp_path, CONFIG, {"server.py": SERVER})
    base = f"http://127.0.0.1:{free_port()}"
    try:
        started = project.run("server", "start", "--listen", base.removeprefix("http://"))
        assert "under supervisord" in started.stdout
        wait_for("the supervised server to answer", lambda: answers(base + "/healthz"))
        viewer = token(project, "dashboard", "viewer")
        status, report = call(base, "GET", "/api/environments", viewer)
        assert status == 200 and report["project"] == "api"
        assert "conveyor server stopped" in project.run("server", "stop").stdout
        assert not answers(base + "/healthz")
        assert "was not running" in project.run("server", "stop").stdout
    finally:
        project.shutdown()
