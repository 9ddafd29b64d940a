"""End to end: the Flask tutorial's flaskr, from the Flask sdist, deploys with `conveyor
init` and no edit to the conveyor.yml it writes (real supervisord and Caddy): deploy, the
tutorial's `flask --app flaskr init-db` as a one-off, data kept across releases, a rolling
redeploy under load with no failed request, a broken release refused, a rollback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import generators
from tests.support.framework_apps import (
    app_project as app_project,  # the fixture
)
from tests.support.framework_apps import (
    current_release,
    deploy,
    get,
    one_off,
    redeploy_under_load,
    refused,
    start,
)
from tests.support.project import Project

pytestmark = pytest.mark.slow


def test_flask_tutorial(app_project: tuple[Path, list[Project]]) -> None:
    tmp, made = app_project
    root = generators.flask_tutorial(tmp / "flask-tutorial")
    project, report = start(root, made)
    assert report["framework"] == "Flask"

    deploy(project)
    assert get(project, "/hello") == (200, "Hello, World!")
    assert get(project, "/")[0] == 500  # no tables before `flask init-db`
    out = one_off(project, "flask", "--app", "flaskr", "init-db").stdout
    assert "Initialized the database." in out
    assert get(project, "/")[0] == 200
    assert get(project, "/auth/register", {"username": "ada", "password": "pw"})[0] == 200
    v1 = current_release(project)

    package = root / "flaskr" / "__init__.py"
    package.write_text(package.read_text().replace("Hello, World!", "Hello, v2!"))
    project.commit("v2")
    redeploy_under_load(project, "/hello")
    assert get(project, "/hello") == (200, "Hello, v2!")
    # The database is in $DATA_DIR: the user registered on v1 logs in on v2.
    login = get(project, "/auth/login", {"username": "ada", "password": "pw"})
    assert login[0] == 200 and "Log Out" in login[1], login

    blog = root / "flaskr" / "blog.py"
    blog.write_text(blog.read_text() + "\ndef broken(:\n")
    project.commit("v3: syntax error")
    refused(project, "gunicorn's worker cannot import flaskr.blog")
    assert get(project, "/hello") == (200, "Hello, v2!")

    project.run("rollback", "staging")
    assert current_release(project) == v1
    assert get(project, "/hello") == (200, "Hello, World!")
