"""Each record is its table's one definition: the migrations must build what it derives.

`compare_metadata` (in test_store_open) sees types, nullability, indexes, unique and
foreign keys; these tests add what it passes over (primary keys, server defaults,
SQLite's AUTOINCREMENT) and check that a record written is the record read back,
through both readers (`Store`, and `SnapshotReader` for `conveyor status`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, text

from conveyor.store import Store, open_store
from conveyor.store.db import create_store_engine
from conveyor.store.records import (
    DeploymentRecord,
    InstanceRecord,
    LockRecord,
    StepRecord,
)
from conveyor.store.snapshot import SnapshotReader
from conveyor.store.tables import metadata

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_migrated_tables_have_the_keys_defaults_and_counters_of_the_definitions(
    store_url: str,
) -> None:
    open_store(store_url).close()
    engine = create_store_engine(store_url)
    try:
        found = inspect(engine)
        assert set(found.get_table_names()) - {"alembic_version"} == set(metadata.tables)
        for name, table in metadata.tables.items():
            keys = found.get_pk_constraint(name)["constrained_columns"]
            assert keys == [c.name for c in table.primary_key.columns], name
            defaults = {
                c["name"]: c["default"] for c in found.get_columns(name) if c["default"] is not None
            }
            if engine.dialect.name == "postgresql":  # serial keys: nextval(...) defaults
                defaults = {k: v for k, v in defaults.items() if not v.startswith("nextval(")}
            declared = {
                c.name: str(c.server_default.arg)  # type: ignore[attr-defined]
                for c in table.columns
                if c.server_default is not None
            }
            assert {k: v.split("'")[1] for k, v in defaults.items()} == declared, name
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                sql = dict(conn.execute(text("SELECT name, sql FROM sqlite_master")).all())
            for name, table in metadata.tables.items():
                wanted = bool(table.dialect_kwargs.get("sqlite_autoincrement"))
                assert ("AUTOINCREMENT" in sql[name]) == wanted, name
    finally:
        engine.dispose()


def test_records_read_back_as_written_by_the_store_and_the_status_reader(tmp_path: Path) -> None:
    deployment = DeploymentRecord(
        id="d1",
        environment="staging",
        kind="deploy",
        status="running",
        strategy="rolling",
        releases={"web": "r2"},
        previous={"web": "r1"},
        user="alice",
        reason=None,
        started_at=WHEN,
        plan=[{"kind": "start", "service": "web"}],
    )
    instance = InstanceRecord(
        name="staging-web-1",
        environment="staging",
        service="web",
        release_id="r2",
        port=24001,
        host="local",
        address="127.0.0.1:24001",
        state="serving",
        created_at=WHEN,
        deployment_id="d1",
    )
    lock = LockRecord(environment="staging", holder="alice", acquired_at=WHEN, pid=42)
    path = tmp_path / "state.db"
    store: Store
    with open_store(f"sqlite:///{path}") as store:
        store.create_deployment(deployment)
        store.upsert_instance(instance)
        store.acquire_lock(lock)
        step = store.step_started("d1", 0, "start", "start web")
        assert store.get_deployment("d1") == deployment
        assert store.list_instances() == [instance]
        assert store.get_lock("staging") == lock
        assert store.list_steps("d1") == [step]
    assert step == StepRecord(
        deployment_id="d1",
        index=0,
        kind="start",
        description="start web",
        status="running",
        started_at=step.started_at,
    )
    reader = SnapshotReader.open(path)
    assert reader is not None
    with reader:
        assert reader.list_deployments() == [deployment]
        assert reader.list_instances() == [instance]
        assert reader.get_lock("staging") == lock
        assert reader.list_steps("d1") == [step]
