"""Real databases for the tests: each test gets its own PostgreSQL, MariaDB or SQLite database.

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) and MariaDB at
127.0.0.1:3306 (root, no password) run on the development machines and in CI;
`./scripts/bootstrap` installs and starts throwaway ones where they are
missing. A test whose server does not answer is skipped with the reason.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.databases import DatabaseUrl, database_for, parse_database_url
from conveyor.databases.base import Database

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
MY_ADMIN: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
ENGINES = ("postgresql", "mysql", "sqlite")


@dataclass
class LiveDatabase:
    """A database of one engine made for one test, with helpers to poke at it."""

    engine: str
    url: DatabaseUrl
    execute: Callable[..., list[tuple[Any, ...]]]  # execute(sql, params=()) -> rows

    def database(self) -> Database:
        return database_for(self.url)

    def checksums(self) -> dict[str, tuple[int, str]]:
        """(rows, digest of every row in key order) per table."""
        out = {}
        for table in self.tables():
            rows = self.execute(f"SELECT * FROM {self.quote(table)} ORDER BY 1")
            digest = hashlib.sha256(repr(rows).encode()).hexdigest()
            out[table] = (len(rows), digest)
        return out

    def tables(self) -> list[str]:
        if self.engine == "postgresql":
            rows = self.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        elif self.engine == "mysql":
            rows = self.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                "DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
            )
        else:
            rows = self.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY 1"
            )
        return [str(r[0]) for r in rows]

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.engine == "mysql" else f'"{name}"'

    def key(self, table: str) -> str:
        """The name row counts use: PostgreSQL qualifies it with the schema."""
        return f"public.{table}" if self.engine == "postgresql" else table


def _postgres(name: str) -> Iterator[LiveDatabase]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 does not answer: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}", autocommit=True)

    def execute(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = conn.execute(sql, params or None)
        return list(cursor.fetchall()) if cursor.description else []

    try:
        yield LiveDatabase(
            "postgresql",
            parse_database_url(f"postgresql://postgres@127.0.0.1:5432/{name}"),
            execute,
        )
    finally:
        conn.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _mysql(name: str) -> Iterator[LiveDatabase]:
    pymysql = pytest.importorskip("pymysql")
    try:
        admin = pymysql.connect(**MY_ADMIN, autocommit=True, connect_timeout=3)
    except pymysql.MySQLError as exc:
        pytest.skip(f"MariaDB at 127.0.0.1:3306 does not answer: {exc}")
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    conn = pymysql.connect(**MY_ADMIN, database=name, autocommit=True)

    def execute(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with conn.cursor() as cursor:
            cursor.execute(sql, params or None)
            return list(cursor.fetchall()) if cursor.description else []

    try:
        yield LiveDatabase(
            "mysql", parse_database_url(f"mysql://root@127.0.0.1:3306/{name}"), execute
        )
    finally:
        conn.close()
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def _app_directory(path: Path) -> Path:
    """A directory the deployed app may write: run as root, Conveyor runs the app (and
    its migrations) as the `conveyor` user, and a SQLite database is the app's file."""
    path.mkdir()
    if os.geteuid() == 0:
        from conveyor.runas import run_user

        user = run_user(None)
        assert user is not None
        os.chown(path, user.uid, user.gid)
    return path


def _sqlite(path: Path) -> Iterator[LiveDatabase]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA user_version = 0")  # the file exists from here on
    owner = path.parent.stat()
    os.chown(path, owner.st_uid, owner.st_gid)  # the directory's owner's, like its data

    def execute(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql.replace("%s", "?"), params).fetchall())

    try:
        yield LiveDatabase("sqlite", parse_database_url(f"sqlite:///{path}"), execute)
    finally:
        conn.close()


@pytest.fixture(params=ENGINES)
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveDatabase]:
    """A fresh, empty database of each engine."""
    name = f"conveyor_test_{secrets.token_hex(4)}"
    if request.param == "postgresql":
        yield from _postgres(name)
    elif request.param == "mysql":
        yield from _mysql(name)
    else:
        yield from _sqlite(_app_directory(tmp_path / "sqlite") / f"{name}.db")


def seed_shop(db: LiveDatabase, orders: int = 300) -> None:
    """Two related tables with awkward text: quotes, parentheses, newlines, unicode."""
    ident = {
        "postgresql": "id serial PRIMARY KEY",
        "mysql": "id integer PRIMARY KEY AUTO_INCREMENT",
        "sqlite": "id integer PRIMARY KEY AUTOINCREMENT",
    }[db.engine]
    db.execute(f"CREATE TABLE customers ({ident}, name varchar(100) NOT NULL)")
    db.execute(
        f"CREATE TABLE orders ({ident}, customer_id integer NOT NULL, "
        "item varchar(200) NOT NULL, note text)"
    )
    for n in range(1, 21):
        db.execute("INSERT INTO customers (name) VALUES (%s)", (f"customer '{n}' (vip)",))
    for n in range(1, orders + 1):
        db.execute(
            "INSERT INTO orders (customer_id, item, note) VALUES (%s, %s, %s)",
            (n % 20 + 1, f"item {n}),('x", "line one\nline two; café ✓ \\ end"),
        )
