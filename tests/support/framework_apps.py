"""Helpers of the end-to-end tests on apps made by their frameworks' own tools
(tests/e2e/test_python_apps.py, tests/e2e/test_flask_app.py): `conveyor init`, deploys,
requests through the router, one-off commands in the current release.

The one-off commands go through `conveyor run`.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Load
from tests.support import generators
from tests.support.project import Project, free_port, git_project

# Few enough requests a second for a single gunicorn worker on a shared machine,
# enough to have requests in flight at every weight change.
RATE = 100.0
# Keeps the session cookie of the Flask tutorial's login.
BROWSER = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())


@pytest.fixture
def app_project(tmp_path: Path) -> Iterator[tuple[Path, list[Project]]]:
    """A directory for a test's projects, and the list of them, shut down after it."""
    made: list[Project] = []
    try:
        yield tmp_path, made
    finally:
        for project in made:
            project.shutdown()


def start(root: Path, made: list[Project]) -> tuple[Project, dict[str, Any]]:
    """Make `root` a repository, run `conveyor init`, and check conveyor.yml stays as written."""
    project = git_project(root, root.parent / "home")
    project.env.update(generators.pip_env())
    made.append(project)
    listen = f"127.0.0.1:{free_port()}"
    report = json.loads(project.run("init", "--listen", listen, "--json").stdout)
    assert report["listen"] == listen
    project.commit("conveyor init")  # as a user would; the config is never part of a release
    return project, report


def get(project: Project, path: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    listen = json.loads(project.run("status", "staging", "--json").stdout)["environments"][0]
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with BROWSER.open(listen["url"] + path, data=body, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def deploy(project: Project, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return project.run("deploy", "staging", "--build", check=check, timeout=300)


def current_release(project: Project) -> str:
    report = json.loads(project.run("status", "staging", "--json").stdout)
    release = report["environments"][0]["services"][0]["release"]
    assert isinstance(release, str)
    return release


def one_off(project: Project, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`conveyor run staging web -- env NAME=VALUE... COMMAND`: once, in the current release."""
    assignments = [f"{k}={v}" for k, v in env.items()]
    return project.run("run", "staging", "web", "--", "env", *assignments, *command, timeout=120)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.strip().splitlines()[-1]


def redeploy_under_load(project: Project, path: str) -> None:
    url = json.loads(project.run("status", "staging", "--json").stdout)["environments"][0]["url"]
    with Load(url + path, clients=2, rate=RATE) as load:
        deploy(project)
        result = load.stop()
    assert result.failures == 0, result
    assert result.requests > 50, result


def refused(project: Project, what: str) -> None:
    """A broken release is refused and the one before keeps serving."""
    serving = current_release(project)
    failed = deploy(project, check=False)
    assert failed.returncode != 0, failed.stdout
    assert current_release(project) == serving, what
