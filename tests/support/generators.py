"""Python projects made by their frameworks' own tools, at test time, from a shared cache.

Everything downloaded is kept in /tmp/conveyor-tests-generators and reused
across runs (a lock file keeps parallel workers from filling it twice):

- a wheelhouse of the packages the generated projects install (Django,
  gunicorn, Flask, FastAPI, uvicorn and their dependencies, flit_core for
  the Flask tutorial's `pip install .`), so builds run `pip install
  --no-index --find-links` through `PIP_*` variables and conveyor.yml
  stays as `conveyor init` wrote it;
- the Flask sdist, whose `examples/tutorial` is the tutorial's flaskr.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

from conveyor.tarball import extract

CACHE = Path("/tmp/conveyor-tests-generators")
WHEELHOUSE = CACHE / "wheelhouse"
PACKAGES = ("django", "gunicorn", "flask", "fastapi", "uvicorn", "flit_core<4")

# The first example of FastAPI's documentation ("First Steps"), verbatim.
FASTAPI_MAIN = """from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello World"}
"""


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", *args, "-q"], check=True, capture_output=True, timeout=600
    )


def wheelhouse() -> Path:
    """A directory of wheels for every package the generated projects install."""
    with _locked("wheelhouse"):
        done = WHEELHOUSE / ".complete"
        if not done.exists():
            _pip("download", "-d", str(WHEELHOUSE), *PACKAGES)
            done.touch()
    return WHEELHOUSE


def requirements_wheelhouse(requirements: Path) -> Path:
    """A directory with the wheels a requirements file needs (e.g. the ERP example's), one
    per content of the file."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    house = CACHE / f"wheelhouse-{digest}"
    with _locked(f"wheelhouse-{digest}"):
        done = house / ".complete"
        if not done.exists():
            _pip("download", "-d", str(house), "-r", str(requirements))
            done.touch()
    return house


def pip_env() -> dict[str, str]:
    """Environment for builds: pip installs from the wheelhouse only, no index."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse())}


def django_admin() -> list[str]:
    """How to run django-admin: this interpreter's Django, else one from the wheelhouse."""
    if importlib.util.find_spec("django") is not None:
        return [sys.executable, "-m", "django"]
    tools = CACHE / "django-tools"
    with _locked("django-tools"):
        if not (tools / "bin" / "django-admin").exists():
            shutil.rmtree(tools, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
            pip = [str(tools / "bin" / "pip"), "install", "-q", "--no-index", "--find-links"]
            subprocess.run([*pip, str(wheelhouse()), "django"], check=True, capture_output=True)
    return [str(tools / "bin" / "django-admin")]


def django_project(destination: Path, name: str = "mysite") -> Path:
    """`django-admin startproject NAME DESTINATION`, as its tutorial runs it."""
    destination.mkdir(parents=True)
    subprocess.run([*django_admin(), "startproject", name, str(destination)], check=True)
    return destination


def flask_tutorial(destination: Path) -> Path:
    """The Flask tutorial's flaskr, from `examples/tutorial` of the Flask sdist."""
    sdists = CACHE / "flask-sdist"
    with _locked("flask-sdist"):
        if not list(sdists.glob("flask-*.tar.gz")):
            _pip("download", "flask", "--no-binary", ":all:", "--no-deps", "-d", str(sdists))
    archive = sorted(sdists.glob("flask-*.tar.gz"))[-1]
    with tarfile.open(archive) as tar:
        top = archive.name.removesuffix(".tar.gz")
        members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/examples/tutorial/")]
        extract(tar, CACHE / "extracted", members)
    shutil.copytree(CACHE / "extracted" / top / "examples" / "tutorial", destination)
    return destination


def fastapi_app(destination: Path, requirements: str = "fastapi\n") -> Path:
    """FastAPI's documented minimal app, with a requirements.txt naming FastAPI."""
    destination.mkdir(parents=True)
    (destination / "main.py").write_text(FASTAPI_MAIN)
    (destination / "requirements.txt").write_text(requirements)
    return destination
