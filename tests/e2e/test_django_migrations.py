"""End to end on a real Django project (`django-admin startproject`) and real PostgreSQL:
the release phase asks Django what is pending (issue 12, item 7) and lints the SQL of
the pending migrations from `sqlmigrate`, aware of table sizes and allowed findings
(item 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.django_project import (
    add_migration,
    change_code,
    configure_database,
    make_django_project,
)
from tests.support.postgres import scratch_database
from tests.support.project import Project

pytestmark = pytest.mark.slow

INDEX_NAME = (
    'migrations.AlterField("item", "name", models.CharField(max_length=100, db_index=True))'
)
INDEX_CODE = 'migrations.AlterField("item", "code", models.CharField(max_length=20, default="", db_index=True))'


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Project, Any]]:
    pytest.importorskip("django")
    with scratch_database("conveyor_django") as (database_url, conn):
        project = make_django_project(tmp_path, database_url)
        try:
            yield project, conn
        finally:
            project.shutdown()


def deploy(project: Project, check: bool = True) -> Any:
    return project.run("deploy", "staging", "--build", check=check)


def last_steps(project: Project) -> dict[str, dict[str, Any]]:
    records = project.json("history", "staging", "-n", "1")
    assert isinstance(records, list)
    explained = project.json("explain", records[0]["id"])
    assert isinstance(explained, dict)
    return {step["kind"]: step for step in explained["steps"]}


def backup_files(project: Project) -> list[str]:
    listed = project.json("db", "list")
    assert isinstance(listed, list)
    return sorted(Path(b["path"]).name for b in listed if Path(b["path"]).exists())


def applied(conn: Any) -> list[str]:
    rows = conn.execute("SELECT name FROM django_migrations WHERE app = 'shop' ORDER BY id")
    return [r[0] for r in rows.fetchall()]


def test_backup_and_migrate_run_only_when_django_has_pending_migrations(
    site: tuple[Project, Any],
) -> None:
    project, conn = site
    first = deploy(project)
    assert "no pending migrations" not in first.stderr
    assert applied(conn) == ["0001_initial"]
    steps = last_steps(project)
    assert steps["pending_migrations"]["status"] == "done"
    assert "shop.0001_initial" in steps["pending_migrations"]["note"]
    assert steps["backup"]["status"] == steps["migrate"]["status"] == "done"
    taken = backup_files(project)
    assert len(taken) == 1

    change_code(project, "v2")  # a new release, no new migration
    second = deploy(project)
    output = second.stdout + second.stderr
    assert "no pending migrations for db 'main': skipped backup and migrate" in output
    assert "back up database" not in output and "migrating" not in output
    assert backup_files(project) == taken  # no new backup file
    steps = last_steps(project)
    assert steps["pending_migrations"]["note"].startswith("nothing pending (Django's")
    for kind in ("check_migration", "backup", "migrate"):
        assert steps[kind]["status"] == "skipped", steps[kind]
        assert "no pending migrations" in steps[kind]["note"]
    records = project.json("history", "staging", "-n", "1")
    assert isinstance(records, list) and records[0]["status"] == "succeeded"
    explained = project.json("explain", records[0]["id"])
    assert isinstance(explained, dict)  # a rolling deploy succeeds; only rollouts promote
    assert explained["conclusion"].startswith("succeeded, with steps skipped:")

    add_migration(project, "0002_item_note", "0001_initial", NOTE)
    third = deploy(project)
    assert "no pending migrations" not in third.stdout + third.stderr
    assert applied(conn) == ["0001_initial", "0002_item_note"]
    steps = last_steps(project)
    assert "shop.0002_item_note" in steps["pending_migrations"]["note"]
    assert {steps[k]["status"] for k in ("check_migration", "backup", "migrate")} == {"done"}
    assert len(backup_files(project)) == 2


NOTE = 'migrations.AddField("item", "note", models.TextField(null=True))'


def test_the_migration_check_lints_sqlmigrate_knows_small_tables_and_allowed_findings(
    site: tuple[Project, Any],
) -> None:
    project, conn = site
    deploy(project)
    conn.execute(
        "INSERT INTO shop_item (name, code) SELECT 'n' || i, 'c' FROM generate_series(1, 5) i"
    )

    # An index on a table of 5 rows: CREATE INDEX without CONCURRENTLY is fine.
    add_migration(project, "0002_item_name_index", "0001_initial", INDEX_NAME)
    small = deploy(project)
    assert (
        "shop.0002_item_name_index line" in small.stderr
        and "create-index-blocking on shop_item not flagged: shop_item has 5 rows, fewer than "
        "databases.main.lint.small_table_rows (10000)"
        in small.stderr
    ), small.stderr
    steps = last_steps(project)
    assert steps["check_migration"]["status"] == "done"
    assert "let through" in steps["check_migration"]["note"]

    # The same on a table above the threshold is refused, naming the rule, table, migration.
    conn.execute(
        "INSERT INTO shop_item (name, code) SELECT 'n' || i, 'c' FROM generate_series(1, 200) i"
    )
    configure_database(project, lint={"small_table_rows": 100})
    add_migration(project, "0003_item_code_index", "0002_item_name_index", INDEX_CODE)
    refused = deploy(project, check=False)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "shop.0003_item_code_index line" in refused.stderr, refused.stderr
    assert "[create-index-blocking]" in refused.stderr
    assert "builds an index on shop_item without CONCURRENTLY" in refused.stderr
    assert "databases.main.lint.allow" in refused.stderr  # the hint says how to allow it
    assert applied(conn) == ["0001_initial", "0002_item_name_index"]

    # Allowed by rule and table: it passes, and says why.
    configure_database(
        project,
        lint={
            "small_table_rows": 100,
            "allow": [{"rule": "create-index-blocking", "table": "shop_item"}],
        },
    )
    allowed = deploy(project)
    assert "allowed by databases.main.lint.allow" in allowed.stderr, allowed.stderr
    assert applied(conn) == ["0001_initial", "0002_item_name_index", "0003_item_code_index"]
