"""Opening the store: URLs, migrations, the fast path, errors that name the URL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from conveyor.errors import StateCorruptError, StateError
from conveyor.store import open_store
from conveyor.store.db import (
    HEAD_REVISION,
    SQLITE_BUSY_TIMEOUT_MS,
    alembic_config,
    create_store_engine,
    current_revision,
    parse_url,
    redact_url,
    transaction,
)
from conveyor.store.tables import metadata

# Prints whether opening the store imported Alembic's command machinery.
OPEN_AND_REPORT = textwrap.dedent(
    """
    import json, sys
    from conveyor.store import open_store
    store = open_store(sys.argv[1])
    store.close()
    print(json.dumps({"command": "alembic.command" in sys.modules,
                      "alembic": "alembic" in sys.modules}))
    """
)


def run_python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- migrations -----------------------------------------------------------------


def test_head_revision_constant_matches_the_scripts() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == HEAD_REVISION


def test_migrate_empty_database_then_reopen_takes_the_fast_path(
    store_url: str, subprocess_env: dict[str, str]
) -> None:
    first = run_python(OPEN_AND_REPORT, store_url, env=subprocess_env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"command": True, "alembic": True}

    second = run_python(OPEN_AND_REPORT, store_url, env=subprocess_env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {"command": False, "alembic": False}

    engine = create_store_engine(store_url)
    try:
        assert current_revision(engine, store_url) == HEAD_REVISION
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_table_definitions(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_store_engine(store_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_store_engine(store_url)
    try:
        config = alembic_config()
        with transaction(engine, write=True) as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert current_revision(engine, store_url) is None
    finally:
        engine.dispose()
    with open_store(store_url) as store:
        store.add_event("note", "schema recreated")
        assert len(store.list_events()) == 1


def test_instances_recorded_before_hosts_read_as_the_local_host(store_url: str) -> None:
    engine = create_store_engine(store_url)
    try:
        config = alembic_config()
        with transaction(engine, write=True) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0006")
            conn.execute(
                text(
                    "INSERT INTO instances (name, environment, service, release_id, port, state,"
                    " created_at) VALUES ('staging-web-1', 'staging', 'web', 'r1', 4123,"
                    " 'serving', '2026-12-01 00:00:00+00:00')"
                )
            )
    finally:
        engine.dispose()
    with open_store(store_url) as store:
        [instance] = store.list_instances()
    assert (instance.host, instance.address, instance.port) == ("local", "127.0.0.1:4123", 4123)


def test_concurrent_first_opens_migrate_once(
    store_url: str, subprocess_env: dict[str, str]
) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_REPORT, store_url],
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    with open_store(store_url) as store:
        assert store.list_releases() == []


def test_database_from_a_newer_conveyor_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_store_engine(store_url)
    try:
        with transaction(engine, write=True) as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        engine.dispose()
    with pytest.raises(StateError) as caught:
        open_store(store_url)
    assert "schema revision 9999" in caught.value.message
    assert caught.value.hint is not None and "upgrade conveyor" in caught.value.hint


# -- SQLite specifics ---------------------------------------------------------


def test_sqlite_uses_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'dir' / 'state.db'}"
    open_store(url).close()  # creates the missing directories
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StateCorruptError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(path) in caught.value.message and "not a SQLite database" in caught.value.message
    assert caught.value.hint is not None and "conveyor state restore" in caught.value.hint


# -- URLs and redaction -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://deploy:s3cret@db.internal:5432/conveyor",
            "postgresql://deploy:***@db.internal:5432/conveyor",
        ),
        ("postgresql://deploy:p@ss:w/rd@db/conveyor", "postgresql://deploy:***@db/conveyor"),
        (
            "postgresql+psycopg://u:pw@h/db?sslmode=require",
            "postgresql+psycopg://u:***@h/db?sslmode=require",
        ),
        (
            "postgresql://db/conveyor?user=deploy&password=s3cret&sslmode=require",
            "postgresql://db/conveyor?user=deploy&password=***&sslmode=require",
        ),
        ("postgresql://deploy@db/conveyor", "postgresql://deploy@db/conveyor"),
        ("postgresql:///conveyor", "postgresql:///conveyor"),
        ("sqlite:////srv/conveyor/state.db", "sqlite:////srv/conveyor/state.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:////tmp/state.db", "sqlite"),
    ],
)
def test_parse_url_picks_psycopg_3(url: str, driver: str) -> None:
    assert parse_url(url).drivername == driver


def assert_redacted(error: StateError, secret: str, shown: str) -> None:
    text_shown = f"{error.message}\n{error.hint}\n{error!s}"
    assert secret not in text_shown
    assert shown in error.message
    assert error.hint


def test_unreachable_postgres_error_redacts_password() -> None:
    url = "postgresql://conveyor:Sup3r-s3cret@127.0.0.1:1/state"
    with pytest.raises(StateError) as caught:
        open_store(url)
    assert_redacted(caught.value, "Sup3r-s3cret", "postgresql://conveyor:***@127.0.0.1:1/state")
    assert "127.0.0.1:1" in (caught.value.hint or "")


@pytest.mark.postgres
def test_missing_postgres_database_error_redacts_password(postgres_server: str) -> None:
    from sqlalchemy.engine import make_url

    server = make_url(postgres_server)
    url = (
        server.set(password="hunter2-pw", database="conveyor_no_such_database")
        .render_as_string(hide_password=False)
        .replace("postgresql+psycopg://", "postgresql://")
    )
    with pytest.raises(StateError) as caught:
        open_store(url)
    assert_redacted(caught.value, "hunter2-pw", ":***@")
    assert "does not exist" in caught.value.message


def test_unsupported_url_is_refused_with_password_redacted() -> None:
    with pytest.raises(StateError) as caught:
        open_store("mysql://root:t0p-secret@db/conveyor")
    assert_redacted(caught.value, "t0p-secret", "mysql://root:***@db/conveyor")
    assert "SQLite or PostgreSQL" in caught.value.message


def test_malformed_url_is_refused() -> None:
    with pytest.raises(StateError) as caught:
        open_store("state.db")
    assert "invalid state database URL state.db" in caught.value.message
    assert caught.value.hint is not None and "sqlite:///" in caught.value.hint
