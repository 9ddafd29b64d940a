"""End to end: projects made by Django's and FastAPI's own tools deploy with
`conveyor init` and no edit to the conveyor.yml it writes (real supervisord and Caddy).

Django: init, deploy, one-off commands in the release (createsuperuser), a
rolling redeploy under load with no failed request, a broken release refused
while the old one keeps serving, and a rollback after the new release served
traffic. FastAPI: init, deploy, a rolling redeploy under load, a broken release
refused and a rollback.

Builds install from a cached wheelhouse (`PIP_NO_INDEX`, `PIP_FIND_LINKS`
passed through the environment), see tests/support/generators.py. The one-off
commands go through `conveyor run`.
The Flask tutorial's test is in test_flask_app.py: each file stays under 3 minutes.
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
    last_line,
    one_off,
    redeploy_under_load,
    refused,
    start,
)
from tests.support.project import Project

pytestmark = pytest.mark.slow


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
        "python",
        "manage.py",
        "createsuperuser",
        "--noinput",
        **users,
        DJANGO_SUPERUSER_PASSWORD="correct horse battery staple",
    )
    count = "from django.contrib.auth.models import User; print(User.objects.count())"
    assert last_line(one_off(project, "python", "manage.py", "shell", "-c", count)) == "1"
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
    assert last_line(one_off(project, "python", "manage.py", "shell", "-c", count)) == "1"

    urls.write_text(urls.read_text() + "\ndef broken(:\n")
    project.commit("v3: broken urls.py")
    refused(project, "the migration's system checks import urls.py")
    assert get(project, "/hello/") == (200, "v2")

    project.run("rollback", "staging")
    assert current_release(project) == v1
    assert get(project, "/hello/")[0] == 404
    assert get(project, "/admin/login/")[0] == 200


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
    v1 = current_release(project)
    redeploy_under_load(project, "/")
    assert get(project, "/") == (200, '{"message":"Hello v2"}')

    # A release whose app cannot import never gets traffic; v2 keeps serving.
    main.write_text(main.read_text() + "\nimport a_module_that_is_not_there\n")
    project.commit("v3: broken import")
    refused(project, "uvicorn cannot import main:app")
    assert get(project, "/") == (200, '{"message":"Hello v2"}')

    # Rollback after v2 served traffic: v1 answers again.
    project.run("rollback", "staging")
    assert current_release(project) == v1
    assert get(project, "/") == (200, '{"message":"Hello World"}')
