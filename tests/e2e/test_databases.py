"""End to end: the release phase (safety check, verified backup, migration) on real databases.

The shop's PostgreSQL variant migrates with Alembic (examples/shop/conveyor.postgres.yml).
The zero-loss scenarios run on PostgreSQL, MariaDB and SQLite with a small SQL-file
migration runner (tests/support/run_sql.py), so that a migration can fail half-way,
which on MariaDB and SQLite leaves its DDL applied.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.databases.conftest import LiveDatabase
from tests.e2e.test_shop import assert_serving, build, change_api, get_json, url
from tests.support.load import traffic
from tests.support.postgres import scratch_database
from tests.support.project import Project

pytestmark = pytest.mark.slow

RUN_SQL = Path(__file__).resolve().parents[1] / "support" / "run_sql.py"


def history(shop: Project) -> list[dict[str, Any]]:
    records = shop.json("history", "staging", "-n", "5")
    assert isinstance(records, list)
    return records


def steps_of(shop: Project, deployment_id: str) -> dict[str, dict[str, Any]]:
    """The last journaled step of each kind."""
    explained = shop.json("explain", deployment_id)
    assert isinstance(explained, dict)
    return {step["kind"]: step for step in explained["steps"]}


def post(address: str) -> Any:
    request = urllib.request.Request(address, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


# -- the PostgreSQL variant with Alembic --------------------------------------------------


@pytest.fixture
def pg_shop(shop: Project) -> Iterator[tuple[Project, Any]]:
    with scratch_database("conveyor_shop") as (database_url, conn):
        shop.config = "conveyor.postgres.yml"
        shop.env["SHOP_DATABASE_URL"] = database_url
        shop.env["SHOP_PYTHON"] = sys.executable
        try:
            yield shop, conn
        finally:
            shop.shutdown()


def add_migration(shop: Project, revision: str, down: str, body: str) -> None:
    versions = shop.root / "api" / "migrations" / "versions"
    (versions / f"{revision}_change.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = {revision!r}\ndown_revision = {down!r}\n"
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n    {body}\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    shop.commit(f"migration {revision}")


def revision(conn: Any) -> str:
    return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_a_deploy_checks_backs_up_and_migrates_before_any_traffic(
    pg_shop: tuple[Project, Any],
) -> None:
    shop, conn = pg_shop
    build(shop)
    first = shop.run("deploy", "staging")
    assert "migrating" in first.stderr
    assert revision(conn) == "0001"
    assert post(url(shop, "/api/counter"))["count"] == 1
    assert post(url(shop, "/api/counter"))["count"] == 2

    add_migration(shop, "0002", "0001", 'op.add_column("counter", sa.Column("note", sa.Text))')
    change_api(shop, "v2")
    v2 = build(shop)["api"]
    with traffic(url(shop)) as load:
        shop.run("deploy", "staging")
        result = load.stop()
    assert result.failures == 0, result.summary()
    assert_serving(shop, v2)
    assert revision(conn) == "0002"
    assert get_json(url(shop, "/api/counter"))["count"] == 2
    record = history(shop)[0]
    assert record["status"] == "succeeded"
    steps = steps_of(shop, record["id"])
    kinds = list(steps)
    assert kinds.index("migrate") < kinds.index("start")  # migrated before any new instance
    assert "keeps" in steps["check_migration"]["note"]
    assert steps["backup"]["note"].startswith("backup shop-staging-")
    backups = shop.json("db", "list")
    assert isinstance(backups, list) and len(backups) == 2
    newest = backups[0]
    assert newest["deployment_id"] == record["id"] and newest["verification"]["ok"] is True
    assert newest["tables"] == {"public.alembic_version": 1, "public.counter": 1}


def test_a_release_without_a_new_alembic_revision_skips_backup_and_migrate(
    pg_shop: tuple[Project, Any],
) -> None:
    shop, conn = pg_shop
    build(shop)
    shop.run("deploy", "staging")
    backups = shop.json("db", "list")
    assert isinstance(backups, list) and len(backups) == 1

    change_api(shop, "v2")  # code only: Alembic's current revision is already the head
    second = shop.run("deploy", "staging", "--build")
    assert "[api] no pending migrations for db 'shop': skipped backup and migrate" in second.stderr
    assert "migrating" not in second.stderr
    assert shop.json("db", "list") == backups
    steps = steps_of(shop, history(shop)[0]["id"])
    assert (
        steps["pending_migrations"]["note"] == "nothing pending (Alembic's current against heads)"
    )
    assert {steps[k]["status"] for k in ("check_migration", "backup", "migrate")} == {"skipped"}
    assert revision(conn) == "0001"


def test_a_breaking_migration_is_refused_then_allowed_when_asked(
    pg_shop: tuple[Project, Any],
) -> None:
    shop, conn = pg_shop
    add_migration(shop, "0002", "0001", 'op.add_column("counter", sa.Column("legacy", sa.Text))')
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    add_migration(shop, "0003", "0002", 'op.drop_column("counter", "legacy")')
    change_api(shop, "v2")
    v2 = build(shop)["api"]

    refused = shop.run("deploy", "staging", check=False)
    assert refused.returncode == 1
    assert "line" in refused.stderr and "ALTER TABLE counter DROP COLUMN legacy" in refused.stderr
    assert "later release" in refused.stderr and "--allow-breaking-migrations" in refused.stderr
    assert revision(conn) == "0002"  # nothing ran
    assert_serving(shop, v1)
    refusal = history(shop)[0]  # refused by the check: not rolled back, nothing had changed
    assert refusal["status"] == "refused" and "DROP COLUMN legacy" in refusal["error"]

    allowed = shop.run("deploy", "staging", "--allow-breaking-migrations")
    assert "allowed by tester@example.com" in allowed.stderr
    assert revision(conn) == "0003"
    assert_serving(shop, v2)
    steps = steps_of(shop, history(shop)[0]["id"])
    assert "allowed by tester@example.com" in steps["check_migration"]["note"]

    # An immediate deploy never runs both releases at once: the same finding is a warning.
    shop.env["SHOP_STRATEGY"] = "immediate"
    add_migration(shop, "0004", "0003", 'op.add_column("counter", sa.Column("dated", sa.Text))')
    change_api(shop, "v3")
    build(shop)
    shop.run("deploy", "staging")
    add_migration(shop, "0005", "0004", 'op.drop_column("counter", "dated")')
    change_api(shop, "v4")
    v4 = build(shop)["api"]
    warned = shop.run("deploy", "staging")
    assert "warning" in warned.stderr and "ALTER TABLE counter DROP COLUMN dated" in warned.stderr
    assert "an immediate deploy does not run both releases at once" in warned.stderr
    assert revision(conn) == "0005"
    assert_serving(shop, v4)


def test_a_migration_failing_half_way_leaves_the_old_release_serving_and_restores(
    pg_shop: tuple[Project, Any],
) -> None:
    shop, conn = pg_shop
    shop.env["SHOP_ON_FAILURE"] = "restore"
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    for _ in range(5):
        post(url(shop, "/api/counter"))
    before = conn.execute("SELECT id, value FROM counter ORDER BY id").fetchall()
    add_migration(
        shop,
        "0002",
        "0001",
        'op.create_table("half", sa.Column("id", sa.Integer)); op.execute("SELECT 1/0")',
    )
    change_api(shop, "v2")
    build(shop)
    with traffic(url(shop)) as load:
        failed = shop.run("deploy", "staging", check=False)
        result = load.stop()
    assert failed.returncode == 1
    assert "migration of api" in failed.stderr and "division by zero" in failed.stderr
    assert "Traceback" not in failed.stderr.split("last lines:")[0]
    assert result.failures == 0, result.summary()
    assert_serving(shop, v1)
    assert conn.execute("SELECT id, value FROM counter ORDER BY id").fetchall() == before
    tables = {
        r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
    }
    assert tables == {"alembic_version", "counter"}
    record = history(shop)[0]
    assert record["status"] == "rolled_back"
    assert steps_of(shop, record["id"])["restore_db"]["status"] == "done"


# -- every engine, with a migration runner that leaves half-applied DDL behind ----------------


def use_database(shop: Project, live: LiveDatabase, on_failure: str = "restore") -> None:
    api = shop.root / "api"
    shutil.copy(RUN_SQL, api / "run_sql.py")
    (api / "sql").mkdir(exist_ok=True)
    (api / "sql" / "0001_orders.sql").write_text(
        "CREATE TABLE orders (id integer PRIMARY KEY, item varchar(100) NOT NULL);\n"
        + "".join(f"INSERT INTO orders VALUES ({n}, 'item {n} (it''s)');\n" for n in range(1, 51))
    )
    shop.configure_top(databases={"main": {"url": live.url.text, "backup": {"verify": "restore"}}})
    shop.configure_service(
        "api",
        migrate={
            "command": [sys.executable, "run_sql.py"],
            "database": "main",
            "sql_preview": {"directory": "sql"},
            "on_failure": on_failure,
        },
    )


def test_every_row_comes_back_after_a_migration_that_failed_half_way(
    shop: Project, live: LiveDatabase
) -> None:
    use_database(shop, live)
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    assert live.checksums()["orders"][0] == 50
    before = live.checksums()
    (shop.root / "api" / "sql" / "0002_half.sql").write_text(
        "CREATE TABLE half_done (id integer);\n"
        "INSERT INTO half_done VALUES (1);\n"
        "ALTER TABLE orders ADD COLUMN note varchar(20);\n"
        "UPDATE orders SET item = 'changed';\n"
        "INSERT INTO no_such_table VALUES (1);\n"
    )
    change_api(shop, "v2")
    build(shop)
    with traffic(url(shop)) as load:
        failed = shop.run("deploy", "staging", check=False)
        result = load.stop()
    assert failed.returncode == 1 and "migration of api" in failed.stderr
    assert result.failures == 0, result.summary()
    assert_serving(shop, v1)
    after = live.checksums()
    assert {k: v for k, v in after.items() if k != "schema_migrations"} == {
        k: v for k, v in before.items() if k != "schema_migrations"
    }
    assert "half_done" not in live.tables()
    record = history(shop)[0]
    assert record["status"] == "rolled_back"
    assert "restored from main-staging-" in steps_of(shop, record["id"])["restore_db"]["note"]


@pytest.mark.parametrize("live", ["sqlite"], indirect=True)
def test_a_backup_damaged_before_its_verification_stops_the_deploy_before_migrating(
    shop: Project, live: LiveDatabase
) -> None:
    use_database(shop, live)
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    (shop.root / "api" / "sql" / "0002_more.sql").write_text(
        "INSERT INTO orders VALUES (51, 'x');\n"
    )
    change_api(shop, "v2")
    build(shop)
    backups = shop.home / "backups" / "main"
    known = set(backups.iterdir())
    deploying = shop.start(
        "deploy", "staging", env={"CONVEYOR_FAILPOINTS": "release_phase.before_verify=sleep:4"}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = [p for p in backups.iterdir() if p not in known and not p.name.startswith(".")]
        if new:
            break
        time.sleep(0.05)
    else:
        deploying.kill()
        pytest.fail("the deploy took no backup")
    data = bytearray(new[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # a bad sector, a bad copy: one byte is enough
    new[0].write_bytes(bytes(data))
    _, err = deploying.communicate(timeout=60)
    assert deploying.returncode == 1, err
    assert "changed since it was taken" in err
    assert live.checksums()["orders"][0] == 50  # the migration never ran
    assert_serving(shop, v1)


@pytest.mark.parametrize("live", ["mysql"], indirect=True)
def test_rollback_restores_the_database_only_when_asked(shop: Project, live: LiveDatabase) -> None:
    use_database(shop, live)
    v1 = build(shop)["api"]
    shop.run("deploy", "staging")
    (shop.root / "api" / "sql" / "0002_more.sql").write_text(
        "INSERT INTO orders VALUES (51, 'new');\nUPDATE orders SET item = 'renamed' WHERE id = 1;\n"
    )
    change_api(shop, "v2")
    build(shop)
    shop.run("deploy", "staging")
    migrated = live.checksums()
    assert migrated["orders"][0] == 51
    before_migration = history(shop)[0]
    taken = [b for b in shop.json("db", "list") if b["deployment_id"] == before_migration["id"]]  # type: ignore[union-attr]
    assert len(taken) == 1

    shop.run("rollback", "staging")  # traffic only
    assert_serving(shop, v1)
    assert live.checksums() == migrated

    change_api(shop, "v3")
    shop.run("deploy", "staging", "--build")
    refused = shop.run("rollback", "staging", "--restore-db", taken[0]["id"], check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    shop.run("rollback", "staging", "--to", f"api={v1}", "--restore-db", taken[0]["id"], "--yes")
    assert_serving(shop, v1)
    restored = live.checksums()
    assert restored["orders"][0] == 50
    assert restored["orders"] != migrated["orders"]
    events = [b["reason"] for b in shop.json("db", "list")]  # type: ignore[union-attr]
    assert any(r and r.startswith("state before restoring") for r in events)
