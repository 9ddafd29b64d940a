"""Flask: an `app = Flask(...)` module or a `create_app()` factory; gunicorn.

An app that keeps its data in Flask's instance folder (the tutorial's
flaskr: `instance_relative_config=True`, `from_pyfile("config.py")`, its
SQLite file in `app.instance_path`) would write into the read-only release
and lose its data with every deploy. The build writes `instance/config.py`,
the place Flask's deployment docs give for production settings, pointing
the database at `$DATA_DIR`, which outlives releases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conveyor.frameworks.model import Detected
from conveyor.frameworks.python import (
    COMMON_EXCLUDES,
    VENV,
    declared_packages,
    imports,
    module_name,
    python_files,
    virtualenv,
)
from conveyor.frameworks.routes import health_path

_APP = re.compile(r"^(\w+)\s*=\s*Flask\(", re.MULTILINE)
_FACTORY = re.compile(r"^def (create_app|make_app)\(", re.MULTILINE)
_DB_FILE = re.compile(
    r"""DATABASE\s*=\s*os\.path\.join\(\s*app\.instance_path\s*,\s*["']([^"']+)["']"""
)
_COMMAND = re.compile(r"""@click\.command\(\s*["']([\w-]+)["']""")


def detect(root: Path) -> Detected | None:
    files = [f for f in python_files(root) if imports(f, "flask")]
    if not files and "flask" not in declared_packages(root):
        return None
    found = _application(root, files)
    if found is None:
        return None
    module, target, source = found
    env = virtualenv(root, "gunicorn", ["flask"])
    notes = list(env.notes)
    service: dict[str, Any] = dict(env.service)
    build: list[str] = list(service.pop("build", []))
    text = source.read_text(errors="replace")
    exclude = [*COMMON_EXCLUDES]
    if "instance_path" in text or "instance_relative_config" in text:
        exclude.append("instance/")
        build.append(_instance_config(text))
        notes.append(
            "the app keeps files in Flask's instance folder, inside the read-only release: "
            "the build writes instance/config.py with its database in $DATA_DIR (kept across "
            "releases) and SECRET_KEY from the environment (set SECRET_KEY in env:)"
        )
    commands = sorted({c for f in files for c in _COMMAND.findall(f.read_text(errors="replace"))})
    for command in commands:
        notes.append(
            f"`flask --app {module} {command}` is a one-off command, not part of a deploy: "
            f"conveyor run staging web -- flask --app {module} {command}"
        )
    if build:
        service["build"] = build
    service["run"] = f"exec {VENV}/bin/gunicorn --bind \"$HOST:$PORT\" '{module}:{target}'"
    path = health_path(files, "/")
    service["health"] = {"type": "http", "path": path, "expect_status": 200}
    if path == "/" and commands:
        notes.append("the health check asks for /: if it needs the database, set health.path")
    service["exclude"] = exclude
    return Detected(
        framework="Flask",
        evidence=f"{source.relative_to(root)}: {target}",
        service=service,
        notes=tuple(notes),
    )


def _application(root: Path, files: list[Path]) -> tuple[str, str, Path] | None:
    """(module, app or factory call, file) of the first app found, shallow files first."""
    for path in files:
        text = path.read_text(errors="replace")
        module = module_name(root, path)
        app = _APP.search(text)
        if app is not None:
            return module, app.group(1), path
        factory = _FACTORY.search(text)
        if factory is not None:
            return module, f"{factory.group(1)}()", path
    return None


def _instance_config(text: str) -> str:
    """The build command that writes instance/config.py."""
    database = _DB_FILE.search(text)
    lines = [
        "mkdir -p instance",
        "cat > instance/config.py <<'EOF'",
        "# Written by the build (conveyor.yml): the release is read-only and replaced by",
        "# every deploy; DATA_DIR outlives releases.",
        "import os",
        "",
        'if "SECRET_KEY" in os.environ:',
        '    SECRET_KEY = os.environ["SECRET_KEY"]',
    ]
    if database is not None:
        name = database.group(1)
        lines += [
            'DATABASE = os.path.join(os.environ.get("DATA_DIR", os.path.dirname(__file__)), '
            f'"{name}")',
        ]
    lines.append("EOF")
    return "\n".join(lines) + "\n"
