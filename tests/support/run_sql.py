"""A minimal migration runner for the tests: apply the new files of sql/ to DATABASE_URL.

Each statement of each file not yet in `schema_migrations` runs on its own, in
autocommit, so a failing statement leaves the earlier ones of its file applied
(as MySQL's DDL would anyway). Exits 1 on the first failure. PostgreSQL
(psycopg), MySQL/MariaDB (PyMySQL) and SQLite (sqlite3).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


def connect(url: str) -> tuple[Any, str]:
    """(connection in autocommit, placeholder) for the URL."""
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None), "?"
    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if url.startswith(("mysql", "mariadb")):
        import pymysql

        conn = pymysql.connect(
            host=parts.hostname or "localhost",
            port=parts.port or 3306,
            user=parts.username or "",
            password=parts.password or "",
            database=name,
            autocommit=True,
        )
        return conn, "%s"
    import psycopg

    return psycopg.connect(url, autocommit=True), "%s"


def execute(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    cursor = conn.cursor()
    if params:
        cursor.execute(sql, params)
    else:  # no parameters: a "%" in the SQL is just a "%"
        cursor.execute(sql)
    rows = cursor.fetchall() if cursor.description else []
    cursor.close()
    return list(rows)


def main() -> None:
    conn, mark = connect(os.environ["DATABASE_URL"])
    execute(conn, "CREATE TABLE IF NOT EXISTS schema_migrations (name varchar(200) PRIMARY KEY)")
    done = {row[0] for row in execute(conn, "SELECT name FROM schema_migrations")}
    for path in sorted(Path("sql").glob("*.sql")):
        if path.name in done:
            continue
        print(f"applying {path.name}")
        for statement in filter(None, (s.strip() for s in path.read_text().split(";\n"))):
            try:
                execute(conn, statement)
            except Exception as exc:
                print(f"{path.name}: {statement.splitlines()[0]}: {exc}", file=sys.stderr)
                sys.exit(1)
        execute(conn, f"INSERT INTO schema_migrations (name) VALUES ({mark})", (path.name,))
    print("up to date")


if __name__ == "__main__":
    main()
