"""A Procfile's `web:` process, as Heroku and Dokku run it; a virtualenv when it is Python.

The `release:` process is not run: a migration belongs under
`services.web.migrate` with its database, where it gets a verified backup
first, and other release tasks have no place that is not guessed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conveyor.frameworks.model import Detected
from conveyor.frameworks.python import COMMON_EXCLUDES, VENV, virtualenv

_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+?)\s*$")
_SHELL = re.compile(r"&&|\|\||[;|&<>()`]|\bexec\b")


def processes(text: str) -> dict[str, str]:
    """The Procfile's processes by name, in order.

    >>> processes("# a comment\\nweb: gunicorn app:app\\nrelease: ./manage.py migrate\\n")
    {'web': 'gunicorn app:app', 'release': './manage.py migrate'}
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and not line.lstrip().startswith("#"):
            found.setdefault(match.group(1), match.group(2))
    return found


def detect(root: Path) -> Detected | None:
    path = root / "Procfile"
    if not path.is_file():
        return None
    procs = processes(path.read_text(errors="replace"))
    web = procs.get("web")
    if web is None:
        return None
    notes: list[str] = []
    service: dict[str, Any] = {}
    python = any((root / f).is_file() for f in ("requirements.txt", "pyproject.toml"))
    run = web if _SHELL.search(web) else f"exec {web}"
    if python:
        server = "gunicorn" if "gunicorn" in web else "uvicorn" if "uvicorn" in web else None
        env = virtualenv(root, server, [])
        service.update(env.service)
        notes += env.notes
        # The Procfile names its programs bare, as an activated virtualenv has them.
        run = f'export PATH="$PWD/{VENV}/bin:$PATH"; {run}'
        service["exclude"] = [*COMMON_EXCLUDES]
    service["run"] = run
    if not any(bound in web for bound in ("127.0.0.1", "localhost", "$HOST", "${HOST}")):
        notes.append(
            "the web process may listen on every interface (gunicorn's default with $PORT is "
            "0.0.0.0): bind it to $HOST:$PORT (127.0.0.1 here, the host's address on a fleet) "
            "so only the router reaches it"
        )
    notes.append("the health check only opens a TCP connection: set health to a page (type: http)")
    for name in procs:
        if name == "release":
            notes.append(
                f"Procfile release: `{procs[name]}` is not run: put a migration under "
                "services.web.migrate with its database (README, Databases)"
            )
        elif name != "web":
            notes.append(f"Procfile {name}: is not deployed (only web is)")
    return Detected(
        framework="Procfile",
        evidence=f"Procfile web: {web}",
        service=service,
        notes=tuple(notes),
    )
