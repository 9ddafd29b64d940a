"""A real Django project made by `django-admin startproject` at test time, on PostgreSQL.

One app, `shop`, with an `Item` model whose migrations the tests write (as
`makemigrations` would), and a `conveyor.yml` that deploys it with
`manage.py runserver` behind Caddy and migrates with `manage.py migrate`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.project import PYCACHE, Project, free_port, git

SETTINGS = """
# Added by the test: the database comes from DATABASE_URL, as on a real host.
import os
from urllib.parse import urlsplit

_db = urlsplit(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "",
        "PORT": str(_db.port or ""),
    }
}
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [*INSTALLED_APPS, "shop"]
"""
INITIAL = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
                ("code", models.CharField(max_length=20, default="")),
            ],
        ),
    ]
"""


def make_django_project(tmp: Path, database_url: str) -> Project:
    """`django-admin startproject mysite` in `tmp/site`, its own git repository and home."""
    root = tmp / "site"
    root.mkdir()
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", "."],
        cwd=root,
        check=True,
        capture_output=True,
    )
    with (root / "mysite" / "settings.py").open("a") as settings:
        settings.write(SETTINGS)
    app = root / "shop"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(INITIAL)
    (root / ".gitignore").write_text("db.sqlite3\n__pycache__/\n")
    listen = f"127.0.0.1:{free_port()}"
    config: dict[str, Any] = {
        "project": "site",
        "databases": {"main": {"url": database_url}},
        "services": {
            "web": {
                "source": ".",
                "run": "exec python3 manage.py runserver --noreload --skip-checks 127.0.0.1:$$PORT",
                "env": {"DATABASE_URL": database_url},
                "health": {"type": "tcp", "interval": "200ms"},
                "deploy_timeout": "30s",
                "migrate": {"command": "python3 manage.py migrate --noinput", "database": "main"},
            }
        },
        "environments": {
            "staging": {
                "listen": listen,
                "strategy": {"type": "rolling", "max_surge": 1, "max_unavailable": 0},
            }
        },
    }
    (root / "conveyor.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "tester@example.com")
    git(root, "config", "user.name", "Tester")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "startproject")
    env = {
        **os.environ,
        "CONVEYOR_HOME": str(tmp / "home"),
        "CONVEYOR_USER": "tester@example.com",
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    for name in ("PYTHONDONTWRITEBYTECODE", "CONVEYOR_FAILPOINTS", "CONVEYOR_STATE_URL"):
        env.pop(name, None)
    return Project(root, tmp / "home", env)


def add_migration(project: Project, name: str, after: str, operation: str) -> None:
    """Write shop/migrations/NAME.py doing `operation` after migration `after`, and commit."""
    (project.root / "shop" / "migrations" / f"{name}.py").write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        f'    dependencies = [("shop", "{after}")]\n'
        f"    operations = [{operation}]\n"
    )
    project.commit(f"migration {name}")


def change_code(project: Project, marker: str) -> None:
    """A change of code only (a new release, nothing to migrate)."""
    (project.root / "shop" / "version.py").write_text(f"VERSION = {marker!r}\n")
    project.commit(marker)


def configure_database(project: Project, **settings: Any) -> None:
    """Set keys of databases.main in conveyor.yml (e.g. lint={...})."""
    path = project.root / "conveyor.yml"
    config = yaml.safe_load(path.read_text())
    config["databases"]["main"].update(settings)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit(f"databases.main: {sorted(settings)}")
