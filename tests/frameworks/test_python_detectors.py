"""The Python detectors on projects made by their frameworks' tools (at test time) and on
small hand-written ones; what they propose loads, and what their build writes works."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.frameworks import detect, procfile, python, routes
from conveyor.frameworks.render import render
from tests.support import generators


def build_commands(service: dict[str, object]) -> list[str]:
    commands = service.get("build", [])
    assert isinstance(commands, list)
    return [str(c) for c in commands]


def run_shell(command: str, cwd: Path) -> None:
    subprocess.run(["/bin/sh", "-c", command], cwd=cwd, check=True)


@pytest.mark.parametrize("module", [python, procfile])
def test_doctests(module: object) -> None:
    failures, _ = doctest.testmod(module)  # type: ignore[arg-type]
    assert failures == 0


def test_django_startproject(tmp_path: Path) -> None:
    root = generators.django_project(tmp_path / "mysite")
    found = detect(root)
    assert found is not None and found.framework == "Django"
    service = found.service
    assert service["run"] == 'exec .venv/bin/gunicorn --bind "$HOST:$PORT" mysite.wsgi'
    assert service["health"] == {"type": "http", "path": "/admin/login/", "expect_status": 200}
    assert service["migrate"] == {
        "command": ".venv/bin/python manage.py migrate --noinput",
        "database": "main",
    }
    assert service["env"] == {"DJANGO_SETTINGS_MODULE": "conveyor_settings"}
    assert found.databases["main"]["url"].startswith("sqlite:///${CONVEYOR_HOME:-.conveyor}/")
    assert "db.sqlite3" in service["exclude"]
    build = build_commands(service)
    # No requirements in a fresh project: Django of the version that made it, and gunicorn.
    assert build[:2] == [
        "python3 -m venv .venv",
        ".venv/bin/pip install 'django==5.2.*' gunicorn",
    ] or build[1].startswith(".venv/bin/pip install 'django==")
    assert not any("collectstatic" in c for c in build)
    assert any("STATIC_ROOT is not set" in n for n in found.notes)
    assert any("gunicorn is not in" in n for n in found.notes)
    render(found, project="mysite")

    # The settings overlay the build writes puts SQLite in DATA_DIR and nothing else changes.
    run_shell(build[-1], root)
    data = tmp_path / "data"
    probe = (
        "import conveyor_settings as s, mysite.settings as m; "
        "print(s.DATABASES['default']['NAME'], s.ROOT_URLCONF == m.ROOT_URLCONF)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=root,
        env={**os.environ, "DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(data / "db.sqlite3"), "True"]


def test_django_with_requirements_and_static_root(tmp_path: Path) -> None:
    root = generators.django_project(tmp_path / "shop", name="shop")
    (root / "requirements.txt").write_text("-r requirements/base.txt\ngunicorn==23.0\n")
    (root / "requirements").mkdir()
    (root / "requirements" / "base.txt").write_text("Django>=5\n")
    settings = root / "shop" / "settings.py"
    settings.write_text(settings.read_text() + '\nSTATIC_ROOT = BASE_DIR / "static"\n')
    found = detect(root)
    assert found is not None
    assert found.service["dependencies"] == {
        "paths": [".venv"],
        "files": ["requirements.txt", "requirements/base.txt"],
        "install": ["python3 -m venv .venv", ".venv/bin/pip install -r requirements.txt"],
    }
    assert build_commands(found.service)[-1] == (
        ".venv/bin/python manage.py collectstatic --noinput"
    )
    assert not any("gunicorn" in n for n in found.notes)
    assert found.service["run"].endswith(" shop.wsgi")


def test_django_reading_database_url(tmp_path: Path) -> None:
    root = generators.django_project(tmp_path / "blog", name="blog")
    settings = root / "blog" / "settings.py"
    text = settings.read_text().replace("django.db.backends.sqlite3", "dj_database_url")
    settings.write_text(text + "\n# DATABASES = dj_database_url.config(env='DATABASE_URL')\n")
    found = detect(root)
    assert found is not None
    assert found.databases == {"main": {"url": "${DATABASE_URL}"}}
    assert "DJANGO_SETTINGS_MODULE" not in found.service["env"]
    assert render(found, project="blog", listen="127.0.0.1:9000")


def test_flask_tutorial(tmp_path: Path) -> None:
    root = generators.flask_tutorial(tmp_path / "flaskr")
    found = detect(root)
    assert found is not None and found.framework == "Flask"
    service = found.service
    assert (
        service["run"] == """exec .venv/bin/gunicorn --bind "$HOST:$PORT" 'flaskr:create_app()'"""
    )
    assert service["health"]["path"] == "/hello"  # `/` lists posts: it needs `init-db` first
    assert service["dependencies"]["files"] == ["pyproject.toml"]
    assert service["dependencies"]["install"][-1] == ".venv/bin/pip install . gunicorn"
    assert "instance/" in service["exclude"]
    assert any("flask --app flaskr init-db" in n for n in found.notes)
    render(found, project="flaskr")

    # instance/config.py, which create_app() reads, puts the database in DATA_DIR.
    run_shell(build_commands(service)[-1], root)
    config: dict[str, object] = {"__file__": str(root / "instance" / "config.py")}
    os.environ["DATA_DIR"] = str(tmp_path / "data")
    try:
        exec((root / "instance" / "config.py").read_text(), config)
    finally:
        del os.environ["DATA_DIR"]
    assert config["DATABASE"] == str(tmp_path / "data" / "flaskr.sqlite")
    assert "SECRET_KEY" not in config


def test_flask_single_module(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
        '@app.route("/")\ndef index():\n    return "hi"\n'
    )
    (tmp_path / "requirements.txt").write_text("flask\ngunicorn\n")
    found = detect(tmp_path)
    assert found is not None and found.framework == "Flask"
    assert found.service["run"] == """exec .venv/bin/gunicorn --bind "$HOST:$PORT" 'app:app'"""
    assert found.service["health"]["path"] == "/"
    assert "build" not in found.service
    assert found.notes == ()


def test_fastapi_first_steps(tmp_path: Path) -> None:
    root = generators.fastapi_app(tmp_path / "api")
    found = detect(root)
    assert found is not None and found.framework == "FastAPI"
    assert found.service["run"] == ('exec .venv/bin/uvicorn main:app --host "$HOST" --port "$PORT"')
    assert found.service["health"] == {"type": "http", "path": "/", "expect_status": 200}
    assert found.service["dependencies"]["install"][-1] == (
        ".venv/bin/pip install -r requirements.txt uvicorn"
    )
    render(found, project="api")


def test_fastapi_package_with_standard_extra_and_no_root_route(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "main.py").write_text(
        "from fastapi import FastAPI\n\napi = FastAPI()\n\n\n"
        '@api.get("/items/{item_id}")\ndef item(item_id: int):\n    return {}\n'
    )
    (tmp_path / "requirements.txt").write_text("fastapi[standard]>=0.100\n")
    found = detect(tmp_path)
    assert found is not None
    assert "app.main:api" in found.service["run"]
    assert found.service["health"]["path"] == "/docs"
    assert found.notes == ()


def test_pyproject_with_uv_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "main.py").write_text(generators.FASTAPI_MAIN)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "api"\nversion = "1"\ndependencies = ["fastapi", "uvicorn"]\n'
    )
    (tmp_path / "uv.lock").write_text("version = 1\n")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    found = detect(tmp_path)
    assert found is not None
    assert found.service["dependencies"] == {
        "paths": [".venv"],
        "files": ["pyproject.toml", "uv.lock"],
        "install": ["UV_PROJECT_ENVIRONMENT=.venv uv sync --frozen --no-dev --no-install-project"],
    }
    monkeypatch.setattr(shutil, "which", lambda name: None)
    found = detect(tmp_path)
    assert found is not None
    assert found.service["dependencies"]["install"][-1] == ".venv/bin/pip install ."
    assert any("no uv" in n for n in found.notes)


def test_procfile_python(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "web: gunicorn hello:app --bind 127.0.0.1:$PORT\nrelease: python migrate.py\n"
        "worker: python worker.py\n"
    )
    (tmp_path / "requirements.txt").write_text("gunicorn\n")
    found = detect(tmp_path)
    assert found is not None and found.framework == "Procfile"
    assert found.service["run"] == (
        'export PATH="$PWD/.venv/bin:$PATH"; exec gunicorn hello:app --bind 127.0.0.1:$PORT'
    )
    assert found.service["dependencies"]["install"][-1] == (
        ".venv/bin/pip install -r requirements.txt"
    )
    notes = " ".join(found.notes)
    assert "release: `python migrate.py` is not run" in notes
    assert "worker: is not deployed" in notes
    assert "0.0.0.0" not in notes
    render(found, project="hello")


def test_procfile_other_language(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("web: ./server --port $PORT && echo done\n")
    found = detect(tmp_path)
    assert found is not None
    assert found.service == {"run": "./server --port $PORT && echo done"}
    assert any("every interface" in n for n in found.notes)


def test_django_wins_over_its_procfile_and_empty_is_nothing(tmp_path: Path) -> None:
    root = generators.django_project(tmp_path / "mysite")
    (root / "Procfile").write_text("web: gunicorn mysite.wsgi\n")
    found = detect(root)
    assert found is not None and found.framework == "Django"
    assert detect(tmp_path / "mysite" / "mysite") is None


def test_routes_with_blueprint_prefixes(tmp_path: Path) -> None:
    (tmp_path / "auth.py").write_text(
        'bp = Blueprint("auth", __name__, url_prefix="/auth")\n\n'
        '@bp.route("/login", methods=("GET", "POST"))\ndef login(): ...\n'
        '@bp.route("/<int:id>/x")\ndef x(): ...\n'
    )
    assert routes.declared_routes([tmp_path / "auth.py"]) == [
        "/auth/login"
    ]  # dynamic paths are skipped
    assert routes.health_path([tmp_path / "auth.py"], "/docs") == "/docs"


def test_init_writes_explains_and_refuses_to_overwrite(tmp_path: Path) -> None:
    root = generators.fastapi_app(tmp_path / "api")
    cli = [sys.executable, "-m", "conveyor", "init", str(root)]
    first = subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True)
    assert json.loads(first.stdout)["framework"] == "FastAPI"
    text = (root / "conveyor.yml").read_text()
    assert text.startswith("# Written by `conveyor init`")
    again = subprocess.run(cli, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    forced = subprocess.run([*cli, "--force"], capture_output=True, text=True, check=True)
    assert "conveyor deploy staging --build" in forced.stdout


def test_fastapi_with_alembic_init_migrates_in_the_release_phase(tmp_path: Path) -> None:
    root = generators.fastapi_app(tmp_path / "api", requirements="fastapi\nalembic\n")
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "init", "alembic"], cwd=root, check=True, capture_output=True)
    found = detect(root)
    assert found is not None and found.framework == "FastAPI"
    assert found.service["migrate"] == {
        "command": ".venv/bin/alembic upgrade head",
        "database": "main",
    }
    assert found.databases == {"main": {"url": "${DATABASE_URL}"}}
    assert found.service["env"]["DATABASE_URL"] == "${DATABASE_URL}"
    # alembic init's env.py reads sqlalchemy.url from the ini: the user is told to change it.
    assert any("alembic/env.py takes the database from sqlalchemy.url" in n for n in found.notes)
    assert not any("alembic is not in" in n for n in found.notes)
    render(found, project="api")

    env_py = root / "alembic" / "env.py"
    env_py.write_text(
        env_py.read_text().replace(
            "config = context.config",
            'config = context.config\nconfig.set_main_option("sqlalchemy.url", '
            'os.environ["DATABASE_URL"])',
        )
    )
    found = detect(root)
    assert found is not None
    assert not any("env.py takes the database" in n for n in found.notes)


def test_no_alembic_ini_no_migration(tmp_path: Path) -> None:
    found = detect(generators.fastapi_app(tmp_path / "api"))
    assert found is not None and "migrate" not in found.service and found.databases == {}
