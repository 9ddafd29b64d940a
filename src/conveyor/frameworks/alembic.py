"""Alembic: `alembic upgrade head` in the release phase of a project with `alembic.ini`.

Flask and FastAPI projects keep their schema in Alembic (directly or through
Flask-Migrate). The release phase runs the upgrade after a verified backup of
the database it names, and the pending check (`alembic current` against `heads`)
skips both when nothing is pending. The database's address comes from
`DATABASE_URL`, the variable the usual `env.py` recipes read; the URL in
`alembic.ini` is a placeholder in a new project and would put a password in git
in a real one.
"""

from __future__ import annotations

import configparser
import dataclasses
from pathlib import Path

from conveyor.frameworks.model import Detected
from conveyor.frameworks.python import VENV, declared_packages, normalise

DATABASE = "main"
UPGRADE = f"{VENV}/bin/alembic upgrade head"

__all__ = ["with_alembic"]


def with_alembic(root: Path, found: Detected) -> Detected:
    """`found` with Alembic's migration added when `root` has an `alembic.ini`."""
    ini = root / "alembic.ini"
    if not ini.is_file() or "migrate" in found.service or found.framework == "Django":
        return found
    notes = [
        f"alembic.ini: the release phase runs `{UPGRADE}` after a verified backup of "
        f"databases.{DATABASE} (DATABASE_URL): set DATABASE_URL before `conveyor deploy`"
    ]
    env_py = _env_py(root, ini)
    if env_py is not None and "DATABASE_URL" not in env_py.read_text(errors="replace"):
        notes.append(
            f"{env_py.relative_to(root.resolve())} takes the database from sqlalchemy.url "
            "in alembic.ini: "
            'make it read DATABASE_URL (config.set_main_option("sqlalchemy.url", '
            'os.environ["DATABASE_URL"])) so the upgrade migrates the database backed up'
        )
    if not {"alembic", "flask-migrate"} & {
        normalise(p.split("[")[0]) for p in declared_packages(root)
    }:
        notes.append("alembic is not in the project's dependencies: add it to them")
    service = dict(found.service)
    service["migrate"] = {"command": UPGRADE, "database": DATABASE}
    service["env"] = {**service.get("env", {}), "DATABASE_URL": "${DATABASE_URL}"}
    databases = {**found.databases, DATABASE: {"url": "${DATABASE_URL}"}}
    return dataclasses.replace(
        found, service=service, databases=databases, notes=(*found.notes, *notes)
    )


def _env_py(root: Path, ini: Path) -> Path | None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(ini)
        location = parser.get("alembic", "script_location", fallback="alembic")
    except configparser.Error:
        return None
    location = location.replace("%(here)s", str(root))
    path = (root / location / "env.py").resolve()
    return path if path.is_file() and path.is_relative_to(root.resolve()) else None
