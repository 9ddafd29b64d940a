"""End to end: `manage.py createsuperuser` through `conveyor run`, on a terminal.

A site made by `django-admin startproject` is added to the shop as a service
(Django comes from the test environment): migrate, then the interactive
createsuperuser, whose password prompt reads /dev/tty (getpass), so the
command must have Conveyor's terminal as its controlling terminal.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_run import on_terminal
from tests.support.project import Project

pytestmark = pytest.mark.slow

PASSWORD = "Xk9-vLq2-pWz7-Tr4"  # typed at the prompt: never in the history

SERVE = """\
import os

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
execute_from_command_line(["manage.py", "runserver", "--noreload", f"127.0.0.1:{os.environ['PORT']}"])
"""


def add_django_site(shop: Project) -> None:
    subprocess.run(
        [Path(sys.executable).parent / "django-admin", "startproject", "mysite"],
        cwd=shop.root,
        check=True,
    )
    settings = shop.root / "mysite" / "mysite" / "settings.py"
    # The database lives in the service's data directory, not in the sealed release.
    text = settings.read_text().replace(
        "'NAME': BASE_DIR / 'db.sqlite3'", "'NAME': Path(os.environ['DATA_DIR']) / 'db.sqlite3'"
    )
    settings.write_text("import os\n" + text)
    (shop.root / "mysite" / "serve.py").write_text(SERVE)
    path = shop.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["services"]["site"] = {
        "source": "mysite",
        "run": ["python3", "serve.py"],
        "replicas": 1,
        "route": {"path": "/site", "strip_prefix": True},
        "health": {"type": "http", "path": "/", "interval": "200ms"},
        "deploy_timeout": "30s",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    shop.commit("a Django site")


def test_createsuperuser_on_a_terminal(shop: Project) -> None:
    add_django_site(shop)
    shop.run("build")
    shop.run("deploy", "staging")
    shop.run("run", "staging", "site", "--", "python3", "manage.py", "migrate", "--noinput")
    output, status = on_terminal(
        shop,
        ["run", "staging", "site", "--", "python3", "manage.py", "createsuperuser"],
        [
            ("Username", b"ada\n"),
            ("Email address", b"ada@example.com\n"),
            ("Password:", PASSWORD.encode() + b"\n"),
            ("Password (again)", PASSWORD.encode() + b"\n"),
        ],
    )
    assert status == 0, output
    assert "Superuser created successfully." in output
    count = (
        "from django.contrib.auth.models import User; "
        "print(User.objects.filter(is_superuser=True).count())"
    )
    check = shop.run("run", "staging", "site", "--", "python3", "manage.py", "shell", "-c", count)
    assert check.stdout.splitlines()[-1] == "1", check.stdout  # after Django 5.2's note
    history = shop.run("history", "staging").stdout
    assert 'run  site  "python3 manage.py createsuperuser"  exit 0' in history
    assert PASSWORD not in history
