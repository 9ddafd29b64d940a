"""A PostgreSQL database of its own for one test, on the server at 127.0.0.1:5432."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[tuple[str, Any]]:
    """(URL, autocommit connection) of a new database, dropped afterwards; the test is
    skipped when psycopg or the server is missing."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL does not answer: {exc}")
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    conn = psycopg.connect(f"host=127.0.0.1 user=postgres dbname={name}", autocommit=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}", conn
    finally:
        conn.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
