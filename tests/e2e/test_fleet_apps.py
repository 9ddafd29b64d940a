"""End to end: a project made by `django-admin startproject`, set up by `conveyor init`,
deployed on two SSH test hosts (`scripts/testhosts`) behind the router on this machine.

What a Python app needs to run from a release shipped to a host: its virtualenv's
scripts (`.venv/bin/gunicorn`) run from another directory than the one they were
built in, the server binds the host's address (`$HOST`), the health check passes
Django's host allow-list, and the release phase (`migrate`) runs on the run host
with the release shipped there first.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import generators
from tests.support.framework_apps import app_project as app_project  # the fixture
from tests.support.framework_apps import start
from tests.support.project import Project, free_port
from tests.support.testhosts import Inventory, hosts_up

pytestmark = pytest.mark.slow

TOKEN = "fleet-token-3f9c2a7e51"  # a secret of the fleet environment (`secrets:`)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inventory]:
    with hosts_up(2, tmp_path_factory.mktemp("testhosts") / "hosts") as inventory:
        yield inventory


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _on_the_fleet(project: Project, hosts: Inventory) -> str:
    """Add a `fleet` environment on the test hosts to what `conveyor init` wrote; its URL."""
    path = project.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    listen = f"127.0.0.1:{free_port()}"
    config["environments"]["fleet"] = {
        "listen": listen,
        "target": "ssh",
        "run_host": "host2",
        "hosts": {"inventory": str(hosts.path)},
        "services": {"web": {"replicas": 2}},
        "secrets": {"FLEET_TOKEN": {"env": "FLEET_TOKEN"}},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("a fleet environment")
    project.run("hosts", "trust", "fleet", "--yes")
    project.run("setup", "fleet")
    return f"http://{listen}"


def test_django_startproject_on_two_hosts(
    app_project: tuple[Path, list[Project]], hosts: Inventory
) -> None:
    tmp, made = app_project
    root = generators.django_project(tmp / "mysite")
    (root / "requirements.txt").write_text("Django\n")
    project, report = start(root, made)
    assert report["framework"] == "Django"
    url = _on_the_fleet(project, hosts)

    project.env["FLEET_TOKEN"] = TOKEN
    done = project.run("deploy", "fleet", "--build", timeout=600)
    assert "ship" in done.stderr and "to host2" in done.stderr
    for _ in range(6):  # both instances answer through the router
        status, body = _get(url + "/admin/login/")
        assert status == 200 and "Django" in body
    report = json.loads(project.run("status", "fleet", "--json").stdout)
    web = report["environments"][0]["services"][0]
    assert sorted(i["host"] for i in web["instances"]) == ["host1", "host2"]
    # The migration ran on the run host, in its DATA_DIR there (a host's files are its
    # user's home on this machine).
    user = hosts.hosts[1]["user"]
    assert Path(f"/home/{user}/.conveyor/mysite/data/fleet/web/db.sqlite3").is_file()
    _the_secret_reached_the_hosts_only(project, hosts, done.stdout + done.stderr)

    urls = root / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace(
            "from django.urls import path",
            "from django.http import HttpResponse\nfrom django.urls import path",
        )
        .replace(
            "urlpatterns = [", 'urlpatterns = [\n    path("hello/", lambda r: HttpResponse("v2")),'
        )
    )
    project.commit("v2: hello")
    project.run("deploy", "fleet", "--build", timeout=600)
    assert {_get(url + "/hello/") for _ in range(4)} == {(200, "v2")}


def _the_secret_reached_the_hosts_only(project: Project, hosts: Inventory, output: str) -> None:
    """The environment's secret is in the instances' environment on their hosts and in a
    command on the run host, and in no file or output on this machine."""
    ran = project.run(
        "run", "fleet", "web", "--", "sh", "-c", 'test "$FLEET_TOKEN" = "$1"', "sh", TOKEN
    )
    assert ran.returncode == 0 and TOKEN not in ran.stdout + ran.stderr
    for host in hosts.hosts[:2]:
        programs = Path(f"/home/{host['user']}/.conveyor/mysite/supervisor/programs")
        held = [p for p in programs.glob("*.conf") if TOKEN in p.read_text()]
        assert held, f"no program file on {host['name']} has the secret"
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in held)
    assert TOKEN not in output
    history = project.run("history", "fleet", "--json").stdout
    assert TOKEN not in history
    for root in (project.home, project.root):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert TOKEN.encode() not in path.read_bytes(), f"the secret is in {path}"
