"""Django: `manage.py` and its settings module; gunicorn, migrate in the release phase.

A project fresh from `django-admin startproject` keeps its SQLite file at
`BASE_DIR / "db.sqlite3"`, inside the release, which is read-only and
replaced by every deploy. Without editing the project, the build writes
`conveyor_settings.py` (the project's settings with the SQLite file in
`$DATA_DIR`, which outlives releases) and the instances, the migration and
one-off commands run with `DJANGO_SETTINGS_MODULE=conveyor_settings`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conveyor.frameworks.model import Detected
from conveyor.frameworks.python import COMMON_EXCLUDES, VENV, virtualenv

OVERLAY = "conveyor_settings"
DATABASE = "main"
# Where DATA_DIR of the staging environment's web service is (README "conveyor.yml").
STAGING_DATA = "${CONVEYOR_HOME:-.conveyor}/data/staging/web"

_SETTINGS = re.compile(r"""DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""")
_VERSION = re.compile(r"using Django (\d+)\.(\d+)")
_WSGI = re.compile(r"""^WSGI_APPLICATION\s*=\s*["']([\w.]+)\.application["']""", re.MULTILINE)
_ADMIN = re.compile(r"""path\(\s*["']([\w/-]*)["']\s*,\s*admin\.site\.urls""")


def detect(root: Path) -> Detected | None:
    manage = root / "manage.py"
    if not manage.is_file():
        return None
    match = _SETTINGS.search(manage.read_text(errors="replace"))
    if match is None:
        return None
    module = match.group(1)
    settings_file = _module_file(root, module)
    if settings_file is None:
        return None
    settings = settings_file.read_text(errors="replace")
    package = module.rsplit(".", 1)[0] if "." in module else module
    wsgi = _WSGI.search(settings)
    wsgi_module = wsgi.group(1) if wsgi else f"{package}.wsgi"
    version = _VERSION.search(settings)
    django = f"'django=={version.group(1)}.{version.group(2)}.*'" if version else "django"
    env = virtualenv(root, "gunicorn", [django])
    notes = list(env.notes)
    service: dict[str, Any] = dict(env.service)
    build: list[str] = list(service.pop("build", []))
    service_env: dict[str, str] = {}
    databases: dict[str, Any] = {}
    migrate = f"{VENV}/bin/python manage.py migrate --noinput"
    if "django.db.backends.sqlite3" in settings:
        build.append(_overlay(module))
        service_env["DJANGO_SETTINGS_MODULE"] = OVERLAY
        databases[DATABASE] = {"url": f"sqlite:///{STAGING_DATA}/db.sqlite3"}
        notes.append(
            f"{module} keeps SQLite inside the project, which becomes the read-only release: "
            f"the build writes {OVERLAY}.py ({module} with the database in $DATA_DIR, kept "
            "across releases); for PostgreSQL, read DATABASE_URL in your settings and set "
            f"databases.{DATABASE}.url"
        )
    elif "DATABASE_URL" in settings:
        databases[DATABASE] = {"url": "${DATABASE_URL}"}
        service_env["DATABASE_URL"] = "${DATABASE_URL}"
        notes.append(f"{module} reads DATABASE_URL: set it before `conveyor deploy`")
    else:
        notes.append(
            f"{module} uses a database conveyor.yml does not describe: add databases: and "
            "services.web.migrate (README, Databases) to migrate it in the release phase"
        )
    if re.search(r"^STATIC_ROOT\s*=", settings, re.MULTILINE):
        build.append(f"{VENV}/bin/python manage.py collectstatic --noinput")
    else:
        notes.append(
            "STATIC_ROOT is not set: no collectstatic, and gunicorn serves no static files "
            "(the admin has no CSS); set STATIC_ROOT and serve it (e.g. with WhiteNoise)"
        )
    if re.search(r"^DEBUG\s*=\s*True", settings, re.MULTILINE):
        notes.append(
            "DEBUG = True (startproject's default) lets 127.0.0.1 and localhost in; with DEBUG "
            "off, list the router's host in ALLOWED_HOSTS or the health check gets 400"
        )
    if build:
        service["build"] = build
    service["run"] = f'exec {VENV}/bin/gunicorn --bind "$HOST:$PORT" {wsgi_module}'
    if service_env:
        service["env"] = service_env
    service["health"] = _health(root, package, notes)
    if databases:
        service["migrate"] = {"command": migrate, "database": DATABASE}
    service["exclude"] = [*COMMON_EXCLUDES, "db.sqlite3", "media/"]
    return Detected(
        framework="Django",
        evidence=f"manage.py, settings {module}",
        service=service,
        databases=databases,
        notes=tuple(notes),
    )


def _module_file(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _health(root: Path, package: str, notes: list[str]) -> dict[str, Any]:
    urls = _module_file(root, f"{package}.urls")
    admin = _ADMIN.search(urls.read_text(errors="replace")) if urls else None
    if admin is not None:
        # The admin's login page answers 200 without a database query or a redirect.
        path = "/" + admin.group(1).strip("/") + "/login/" if admin.group(1) else "/login/"
        return {"type": "http", "path": path.replace("//", "/"), "expect_status": 200}
    notes.append("no admin URLs found: the health check asks for / (set health.path)")
    return {"type": "http", "path": "/", "expect_status": 200}


def _overlay(module: str) -> str:
    """The build command that writes conveyor_settings.py."""
    return (
        f"cat > {OVERLAY}.py <<'EOF'\n"
        f'"""Written by the build (conveyor.yml): {module} with SQLite in $DATA_DIR.\n\n'
        "The release is read-only and replaced by every deploy; DATA_DIR outlives releases.\n"
        '"""\n\n'
        "import os\n\n"
        f"from {module} import *  # noqa: F403\n"
        f"from {module} import DATABASES\n\n"
        'if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":\n'
        '    DATABASES["default"]["NAME"] = os.path.join(os.environ.get("DATA_DIR", "."), '
        '"db.sqlite3")\n'
        "EOF\n"
    )
