"""Fixtures: every store test runs against SQLite and against a real PostgreSQL.

PostgreSQL is expected at 127.0.0.1:5432 (user postgres, trust auth), or at
the server URL in `CONVEYOR_TEST_POSTGRES_URL`. Each test gets a database of its
own, created before and dropped (`WITH (FORCE)`) after. When no server answers,
the PostgreSQL variants are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from conveyor.store import Store, open_store
from conveyor.store.db import redact_url

POSTGRES_SERVER_URL = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a database on the test server we may CREATE DATABASE from."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - dev extra installs it
        pytest.skip(f"psycopg is not installed ({exc}): PostgreSQL store tests skipped")
    try:
        psycopg.connect(POSTGRES_SERVER_URL, autocommit=True, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        pytest.skip(f"PostgreSQL not reachable at {redact_url(POSTGRES_SERVER_URL)} ({reason})")
    return POSTGRES_SERVER_URL


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database; yields its URL (`postgresql://...`)."""
    import psycopg
    from psycopg import sql

    name = f"conveyor_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty state database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An opened (migrated) store, closed after the test."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for a child Python that must import this checkout's `conveyor`."""
    import conveyor

    src = str(Path(conveyor.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env
