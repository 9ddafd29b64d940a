"""The fast path (cached summary + SQLite snapshot) and the full path give one report."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conveyor.config import load_config
from conveyor.config.cache import ConfigSummary
from conveyor.engine.status import fast_sources, sqlite_state_file, status_report
from conveyor.paths import Paths
from conveyor.store import open_store, tables
from conveyor.store.snapshot import COLUMNS, SnapshotReader

from .conftest import StatusProject


def full_report(project: StatusProject) -> dict[str, Any]:
    loaded = load_config()
    names = list(loaded.config.environments)
    with open_store(f"sqlite:///{project.paths.state_db}") as store:
        return status_report(store, ConfigSummary.of(loaded.config), project.paths, names)


def fast_report(project: StatusProject) -> dict[str, Any]:
    fast = fast_sources(None, None)
    assert fast is not None, "the fast path should be usable after a full load"
    with fast.reader:
        return status_report(fast.reader, fast.config, fast.paths, list(fast.config.environments))


def test_fast_and_full_reports_are_identical(project: StatusProject) -> None:
    assert fast_sources(None, None) is None  # nothing cached yet
    full = full_report(project)  # load_config leaves the summary behind
    assert fast_report(project) == full

    assert full["project"] == "demo"
    staging, production = full["environments"]
    assert (staging["name"], staging["url"], staging["listen"], staging["strategy"]) == (
        "staging",
        "http://127.0.0.1:18080",
        "127.0.0.1:18080",
        "rolling",
    )
    assert staging["lock"] == {
        "holder": "bob@example.com",
        "acquired_at": "2026-05-01T12:05:00Z",
        "deployment_id": None,
        "message": "maintenance window",
    }
    assert staging["last_deployment"]["status"] == "succeeded"
    api = staging["services"][0]
    assert [i["name"] for i in api["instances"]] == ["staging-api-aaaa-1", "staging-api-aaaa-2"]
    assert api["instances"][0]["process"] == "unknown"  # supervisord is not running
    assert [(i["host"], i["address"]) for i in api["instances"]] == [
        ("local", "127.0.0.1:20001"),
        ("local", "127.0.0.1:20002"),
    ]
    assert (production["url"], production["strategy"]) == ("https://demo.example.com", "immediate")
    assert [(s["name"], s["replicas"]) for s in production["services"]] == [("api", 3), ("web", 1)]
    assert production["unfinished"] == {
        "id": "20260501-130000-bbbb",
        "status": "running",
        "in_progress": False,
        "summary": "deployment 20260501-130000-bbbb of production (running) was interrupted at "
        'step 2/3 (wait until healthy); run "conveyor resume production" to finish it or '
        '"conveyor abort production" to roll it back',
    }


def test_cli_json_is_identical_cold_and_warm(project: StatusProject) -> None:
    for args in (["status", "--json"], ["status", "production", "--json"]):
        project.paths.config_summary.unlink(missing_ok=True)
        cold = project.cli(*args)
        assert cold.returncode == 0, cold.stderr
        assert project.paths.config_summary.is_file()
        warm = project.cli(*args)
        assert warm.returncode == 0, warm.stderr
        assert warm.stdout == cold.stdout
        assert json.loads(warm.stdout)["project"] == "demo"


def test_human_output_is_identical_cold_and_warm(project: StatusProject) -> None:
    cold = project.cli("status")
    warm = project.cli("status")
    assert cold.returncode == warm.returncode == 0
    assert warm.stdout == cold.stdout
    assert "unfinished:" in warm.stdout


def test_snapshot_reader_answers_like_the_store(project: StatusProject) -> None:
    snapshot = SnapshotReader.open(project.paths.state_db)
    assert snapshot is not None
    with open_store(f"sqlite:///{project.paths.state_db}") as store, snapshot:
        for env in ("staging", "production", "nowhere"):
            assert snapshot.current_releases(env) == store.current_releases(env)
            assert snapshot.get_lock(env) == store.get_lock(env)
            assert snapshot.unfinished_deployment(env) == store.unfinished_deployment(env)
            assert snapshot.list_deployments(env) == store.list_deployments(env)
            assert snapshot.list_deployments(env, limit=1) == store.list_deployments(env, limit=1)
            assert snapshot.list_instances(environment=env) == store.list_instances(environment=env)
            assert snapshot.list_instances(environment=env, service="api") == (
                store.list_instances(environment=env, service="api")
            )
        assert snapshot.list_deployments() == store.list_deployments()
        assert snapshot.list_instances() == store.list_instances()
        for deployment in store.list_deployments():
            assert snapshot.list_steps(deployment.id) == store.list_steps(deployment.id)


def test_snapshot_reads_only_columns_of_the_schema() -> None:
    for table, columns in COLUMNS.items():
        assert set(columns) <= set(tables.metadata.tables[table].c.keys()), table


def test_snapshot_leaves_missing_and_older_databases_to_the_store(
    project: StatusProject, tmp_path: Path
) -> None:
    assert SnapshotReader.open(tmp_path / "missing.db") is None
    assert not (tmp_path / "missing.db").exists()
    with contextlib.closing(sqlite3.connect(project.paths.state_db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    assert SnapshotReader.open(project.paths.state_db) is None
    load_config()
    assert fast_sources(None, None) is None


def test_only_plain_sqlite_urls_are_read_directly(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home")
    assert sqlite_state_file(paths, None) == paths.state_db
    assert sqlite_state_file(paths, "") == paths.state_db
    assert sqlite_state_file(paths, "sqlite:////srv/state.db") == Path("/srv/state.db")
    assert sqlite_state_file(paths, "sqlite:///state.db") == Path("state.db")
    for url in (
        "postgresql://deploy:pw@db/conveyor",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////srv/state.db?mode=ro",
        "sqlite:////srv/a%20b.db",
        "sqlite+pysqlite:////srv/state.db",
    ):
        assert sqlite_state_file(paths, url) is None, url


def test_postgresql_state_uses_the_store(
    project: StatusProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_config()
    assert fast_sources(None, None) is not None
    monkeypatch.setenv("CONVEYOR_STATE_URL", "postgresql://postgres@127.0.0.1:5432/conveyor")
    assert fast_sources(None, None) is None


def test_unknown_environment_is_reported_as_before(project: StatusProject) -> None:
    assert project.cli("status").returncode == 0  # warm
    result = project.cli("status", "nowhere")
    assert result.returncode == 2
    assert 'unknown environment "nowhere" (environments are: production, staging)' in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
