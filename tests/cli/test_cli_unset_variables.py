"""Commands that start nothing work while a variable only `run:`/`env` need is unset;
commands that start something refuse, naming the variable and where it is used."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import make_app
from tests.support.project import Project

CONFIG = """\
project: demo
services:
  app:
    run: [python3, -m, "${APP_MODULE}"]
    env: {API_TOKEN: "${API_TOKEN}"}
environments:
  dev:
    listen: ${LISTEN}
"""
NEEDED = [
    'services/app/run/2: environment variable "APP_MODULE" is not set',
    'services/app/env/API_TOKEN: environment variable "API_TOKEN" is not set',
]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Project]:
    project = make_app(tmp_path, CONFIG)
    try:
        yield project
    finally:
        project.shutdown()


def test_commands_that_start_nothing_work_without_the_variables(app: Project) -> None:
    status = app.json("status", "dev")
    assert status["environments"][0]["name"] == "dev"  # type: ignore[index]
    assert app.json("history", "dev") == []
    assert app.json("releases") == []
    down = app.run("down", "dev", "--yes")
    assert "dev has nothing running" in down.stdout
    explain = app.run("explain", "20261206-000000-abcd", check=False)
    assert "not set" not in explain.stderr and "Traceback" not in explain.stderr


def test_validate_warns_about_them_and_exits_0(app: Project) -> None:
    result = app.run("validate")
    assert "valid" in result.stdout
    assert "warning: unset: APP_MODULE, API_TOKEN" in result.stderr
    for line in NEEDED:
        assert line in result.stderr
    report = json.loads(app.run("validate", "--json").stdout)
    assert report["unset"] == {
        "APP_MODULE": ["services/app/run/2"],
        "API_TOKEN": ["services/app/env/API_TOKEN"],
    }


@pytest.mark.parametrize("command", [("build",), ("deploy", "dev"), ("rollback", "dev")])
def test_commands_that_start_something_refuse_naming_the_variable(
    app: Project, command: tuple[str, ...]
) -> None:
    result = app.run(*command, check=False)
    assert result.returncode == 2, result.stderr
    for line in NEEDED:
        assert line in result.stderr
    assert "Traceback" not in result.stderr


def test_with_the_variables_set_nothing_is_said(app: Project) -> None:
    result = app.run("validate", env={"APP_MODULE": "http.server", "API_TOKEN": "t0ken"})
    assert "warning" not in result.stderr
