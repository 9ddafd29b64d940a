"""`conveyor run`'s record: what the history keeps of a one-off command."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from conveyor.engine.oneoff import OneOff, describe_run, run_json, search_path
from conveyor.store.records import EventRecord


def oneoff(argv: list[str]) -> OneOff:
    return OneOff(
        environment="staging",
        service="web",
        release_id="r1",
        release_dir=Path("/releases/web/r1"),
        argv=argv,
        env={"DJANGO_SECRET_KEY": "dj-secret-123", "DATABASE_URL": "postgres://a:pw9@db/x"},
    )


def test_recorded_argv_masks_the_service_secrets() -> None:
    run = oneoff(["python", "-c", "print('dj-secret-123')", "postgres://a:pw9@db/x", "pw9"])
    assert run.recorded_argv == ["python", "-c", "print('***')", "postgres://a:***@db/x", "***"]
    assert run.argv[2] == "print('dj-secret-123')"  # what runs is untouched


def test_describe_run_is_one_line() -> None:
    data = {"service": "web", "command": "python manage.py createsuperuser", "exit_code": 0}
    assert describe_run(data) == 'run  web  "python manage.py createsuperuser"  exit 0'
    on_host = {**data, "host": "host2"}
    assert describe_run(on_host) == 'run  web  "python manage.py createsuperuser"  exit 0  on host2'


def test_run_json() -> None:
    data = {
        "service": "web",
        "release": "r1",
        "argv": ["flask", "--app", "flaskr", "init-db"],
        "command": "flask --app flaskr init-db",
        "exit_code": 2,
        "user": "ann@example.com",
        "started_at": "2026-12-06T01:00:00Z",
        "duration_s": 1.5,
    }
    finished = datetime(2026, 12, 6, 1, 0, 2, tzinfo=UTC)
    event = EventRecord(
        id=7, time=finished, kind="run", message="", environment="staging", data=data
    )
    assert run_json(event) == {
        "id": "run-7",
        "environment": "staging",
        "kind": "run",
        "status": "failed",
        "service": "web",
        "release": "r1",
        "releases": {"web": "r1"},
        "command": "flask --app flaskr init-db",
        "argv": ["flask", "--app", "flaskr", "init-db"],
        "exit_code": 2,
        "user": "ann@example.com",
        "started_at": "2026-12-06T01:00:00Z",
        "finished_at": "2026-12-06T01:00:02Z",
        "duration_s": 1.5,
        "host": "local",
    }
    on_host = EventRecord(7, finished, "run", "", environment="fleet", data={**data, "host": "h2"})
    assert run_json(on_host)["host"] == "h2"


def test_release_programs_come_first_on_the_path(tmp_path: Path) -> None:
    assert search_path(tmp_path, "/usr/bin:/bin") == "/usr/bin:/bin"
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / "node_modules" / ".bin").mkdir(parents=True)
    assert search_path(tmp_path, "/usr/bin") == (
        f"{tmp_path}/.venv/bin:{tmp_path}/node_modules/.bin:/usr/bin"
    )
