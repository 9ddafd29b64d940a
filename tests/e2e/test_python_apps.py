"""End to end: projects made by Django's, Flask's and FastAPI's own tools deploy with
`conveyor init` and no edit to the conveyor.yml it writes (real supervisord and Caddy).

Each test: init, deploy, a one-off command in the release, a rolling redeploy
under load with no failed request, a broken release refused while the old one
keeps serving, and a rollback after the new release served traffic.

Builds install from a cached wheelhouse (`PIP_NO_INDEX`, `PIP_FIND_LINKS`
passed through the environment), see tests/support/generators.py. The one-off
commands run through tests/support/one_off.py (`conveyor run` is not there yet).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import Load
from tests.support import generators
from tests.support.project import REPO, Project, free_port, git_project

pytestmark = pytest.mark.slow

# Few enough requests a second for a single gunicorn worker on a shared machine,
# enough to have requests in flight at every weight change.
RATE = 100.0
# Keeps the session cookie of the Flask tutorial's login.
BROWSER = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())


@pytest.fixture
def app_project(tmp_path: Path) -> Iterator[tuple[Path, list[Project]]]:
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
    """`command` in the current release of web on staging, with its instances' environment."""
    assignments = [f"{k}={v}" for k, v in env.items()]
    argv = [sys.executable, "-m", "tests.support.one_off", "staging", "web"]
    result = subprocess.run(
        [*argv, current_release(project), *assignments, "--", *command],
        cwd=project.root,
        env={**project.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


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


def test_django_startproject(app_project: tuple[Path, list[Project]]) -> None:
    tmp, made = app_project
    root = generators.django_project(tmp / "mysite")
    # Every deployment guide starts here; without it each build installs Django anew.
    (root / "requirements.txt").write_text("Django\n")
    project, report = start(root, made)
    assert report["framework"] == "Django"
    assert any("gunicorn" in note for note in report["notes"])

    deploy(project)
    status, body = get(project, "/admin/login/")
    assert status == 200 and "Django" in body

    # createsuperuser writes to the database the migration made, in $DATA_DIR.
    users = {"DJANGO_SUPERUSER_USERNAME": "admin", "DJANGO_SUPERUSER_EMAIL": "a@example.com"}
    one_off(
        project,
        ".venv/bin/python",
        "manage.py",
        "createsuperuser",
        "--noinput",
        **users,
        DJANGO_SUPERUSER_PASSWORD="correct horse battery staple",
    )
    count = "from django.contrib.auth.models import User; print(User.objects.count())"
    assert last_line(one_off(project, ".venv/bin/python", "manage.py", "shell", "-c", count)) == "1"
    assert (project.home / "data" / "staging" / "web" / "db.sqlite3").is_file()
    v1 = current_release(project)

    urls = root / "mysite" / "urls.py"
    v1_urls = urls.read_text()
    urls.write_text(
        v1_urls.replace(
            "from django.urls import path",
            "from django.http import HttpResponse\nfrom django.urls import path",
        ).replace(
            "urlpatterns = [", 'urlpatterns = [\n    path("hello/", lambda r: HttpResponse("v2")),'
        )
    )
    project.commit("v2: hello")
    redeploy_under_load(project, "/admin/login/")
    assert get(project, "/hello/") == (200, "v2")
    assert last_line(one_off(project, ".venv/bin/python", "manage.py", "shell", "-c", count)) == "1"

    urls.write_text(urls.read_text() + "\ndef broken(:\n")
    project.commit("v3: broken urls.py")
    refused(project, "the migration's system checks import urls.py")
    assert get(project, "/hello/") == (200, "v2")

    project.run("rollback", "staging")
    assert current_release(project) == v1
    assert get(project, "/hello/")[0] == 404
    assert get(project, "/admin/login/")[0] == 200


def test_flask_tutorial(app_project: tuple[Path, list[Project]]) -> None:
    tmp, made = app_project
    root = generators.flask_tutorial(tmp / "flask-tutorial")
    project, report = start(root, made)
    assert report["framework"] == "Flask"

    deploy(project)
    assert get(project, "/hello") == (200, "Hello, World!")
    assert get(project, "/")[0] == 500  # no tables before `flask init-db`
    out = one_off(project, ".venv/bin/flask", "--app", "flaskr", "init-db").stdout
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


def test_fastapi_first_steps(app_project: tuple[Path, list[Project]]) -> None:
    tmp, made = app_project
    root = generators.fastapi_app(tmp / "fastapi-app")
    project, report = start(root, made)
    assert report["framework"] == "FastAPI"
    assert any("uvicorn" in note for note in report["notes"])

    deploy(project)
    assert get(project, "/") == (200, '{"message":"Hello World"}')

    main = root / "main.py"
    main.write_text(main.read_text().replace("Hello World", "Hello v2"))
    project.commit("v2")
    redeploy_under_load(project, "/")
    assert get(project, "/") == (200, '{"message":"Hello v2"}')
