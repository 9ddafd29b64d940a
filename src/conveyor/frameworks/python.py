"""What every Python project needs in its `conveyor.yml`: a virtualenv built in the release.

The virtualenv is made by `dependencies:` (reused by hard links while the
requirements or lock files are unchanged) when the project has such files,
else by `build:` commands. The server (gunicorn, uvicorn) is added to the
install when the project does not list it.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VENV = ".venv"
PIP = f"{VENV}/bin/pip"
MAKE_VENV = f"python3 -m venv {VENV}"
# Files a release never needs, whatever the framework: git-tracked tests, docs
# and a local environment file with secrets in it.
COMMON_EXCLUDES = ("tests/", "docs/", ".env")

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?")
_SKIP = frozenset({"venv", "env", "tests", "test", "node_modules", "__pycache__", "site-packages"})
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement)\s*=?\s*(\S+)")


@dataclass(frozen=True)
class Environment:
    """How the release gets its virtualenv: `service` keys and what the user should know."""

    service: dict[str, Any]
    packages: frozenset[str]  # normalised names the project declares (with "name[extra]")
    notes: tuple[str, ...]


def normalise(name: str) -> str:
    """PEP 503 name: `Flask_SQLAlchemy` and `flask.sqlalchemy` are `flask-sqlalchemy`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(lines: list[str]) -> set[str]:
    """Names (and `name[extra]`) of requirement specifiers; options and URLs are skipped.

    >>> sorted(requirement_names(["Django>=5 # web", "-r base.txt", "fastapi[standard]==0.1"]))
    ['django', 'fastapi', 'fastapi[standard]']
    """
    names: set[str] = set()
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-") or "://" in line:
            continue
        match = _NAME.match(line)
        if match:
            name = normalise(match.group(1))
            names.add(name)
            for extra in (match.group(2) or "").strip("[]").split(","):
                if extra.strip():
                    names.add(f"{name}[{extra.strip().lower()}]")
    return names


def _requirement_files(root: Path, name: str, seen: list[str]) -> list[str]:
    """`name` and the files it includes with `-r`, relative to `root`, each once."""
    if name in seen or not (root / name).is_file():
        return seen
    seen.append(name)
    for line in (root / name).read_text(errors="replace").splitlines():
        match = _INCLUDE.match(line)
        if match:
            included = (Path(name).parent / match.group(1)).as_posix()
            _requirement_files(root, included, seen)
    return seen


def _pyproject(root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _pyproject_names(data: dict[str, Any]) -> set[str]:
    project = data.get("project", {})
    names = requirement_names([str(d) for d in project.get("dependencies", [])])
    poetry = data.get("tool", {}).get("poetry", {}).get("dependencies", {})
    names |= {normalise(n) for n in poetry if n.lower() != "python"}
    return names


def declared_packages(root: Path) -> set[str]:
    """Every package the project's requirements or pyproject.toml name."""
    names: set[str] = set()
    if (root / "requirements.txt").is_file():
        for name in _requirement_files(root, "requirements.txt", []):
            names |= requirement_names((root / name).read_text(errors="replace").splitlines())
    if (root / "pyproject.toml").is_file():
        names |= _pyproject_names(_pyproject(root))
    return names


def has_server(packages: set[str] | frozenset[str], server: str) -> bool:
    """Whether the project installs `server` itself (fastapi[standard] brings uvicorn)."""
    if server in packages:
        return True
    return server == "uvicorn" and bool({"fastapi[standard]", "fastapi[all]"} & packages)


def virtualenv(root: Path, server: str | None, fallback: list[str]) -> Environment:
    """The virtualenv of the project at `root`, with `server` in it.

    `server` None: the command that runs is the project's business (a Procfile's).
    `fallback` is what to install when the project lists no dependencies at
    all (a project fresh from `django-admin startproject` has no requirements).
    """
    packages = frozenset(declared_packages(root))
    notes: list[str] = []
    extra = [] if server is None or has_server(packages, server) else [server]
    if extra:
        notes.append(
            f"{server} is not in the project's dependencies: the install adds it "
            f"(add it to your requirements to pin its version)"
        )
    tail = "".join(f" {p}" for p in extra)
    if (root / "requirements.txt").is_file():
        files = _requirement_files(root, "requirements.txt", [])
        install = [MAKE_VENV, f"{PIP} install -r requirements.txt{tail}"]
        return _reused(files, install, packages, notes)
    if (root / "pyproject.toml").is_file():
        return _from_pyproject(root, tail, packages, notes)
    notes.append(
        "no requirements.txt or pyproject.toml: every build installs "
        + " ".join(fallback + extra)
        + " (commit a requirements.txt to pin them and reuse the virtualenv between releases)"
    )
    build = [MAKE_VENV, f"{PIP} install " + " ".join(fallback + extra)]
    return Environment({"build": build}, packages, tuple(notes))


def _from_pyproject(
    root: Path, tail: str, packages: frozenset[str], notes: list[str]
) -> Environment:
    if (root / "uv.lock").is_file() and shutil.which("uv"):
        # --no-install-project: the release's own copy of the code is what runs,
        # and an editable install would name this release's path in a reused venv.
        install = [f"UV_PROJECT_ENVIRONMENT={VENV} uv sync --frozen --no-dev --no-install-project"]
        if tail:
            install.append(f"uv pip install --python {VENV}/bin/python{tail}")
        return _reused(["pyproject.toml", "uv.lock"], install, packages, notes)
    files = ["pyproject.toml"]
    if (root / "uv.lock").is_file():
        notes.append("uv.lock found but no uv on this machine: pip installs the project instead")
        files.append("uv.lock")
    if (root / "poetry.lock").is_file():
        notes.append("poetry.lock found: pip installs from pyproject.toml (not from the lock)")
        files.append("poetry.lock")
    install = [MAKE_VENV, f"{PIP} install .{tail}"]
    notes.append(
        "the project is installed into the virtualenv with `pip install .`; "
        "the release's own copy of the code comes first on sys.path"
    )
    return _reused(files, install, packages, notes)


def _reused(
    files: list[str], install: list[str], packages: frozenset[str], notes: list[str]
) -> Environment:
    spec = {"paths": [VENV], "files": files, "install": install}
    return Environment({"dependencies": spec}, packages, tuple(notes))


def imports(path: Path, module: str) -> bool:
    """Whether the Python file at `path` imports `module` (a plain text search)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    pattern = (
        rf"^\s*(?:from\s+{re.escape(module)}(?:\.\w+)*\s+import|import\s+{re.escape(module)}\b)"
    )
    return re.search(pattern, text, re.MULTILINE) is not None


def module_name(root: Path, path: Path) -> str:
    """The dotted module a Python file under `root` is imported as (`app/main.py`: app.main)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path, limit: int = 400) -> list[Path]:
    """The project's Python files, shallow first, skipping virtualenvs and caches."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP and not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
        if len(found) >= limit:
            break
    return sorted(found, key=lambda p: (len(p.parts), p))[:limit]
