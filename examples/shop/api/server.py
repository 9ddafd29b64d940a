"""The shop API: health, version, a counter in SQLite (or PostgreSQL), a slow endpoint.

Run: PORT=8000 DATA_DIR=/tmp/shop python3 server.py (from the release directory,
where an optional faults.json is read). Standard library only, except with
DATABASE_URL=postgresql://... (the PostgreSQL variant, conveyor.postgres.yml):
then the counter lives in PostgreSQL, through psycopg, in the table the
Alembic migrations in migrations/ create.
"""

from __future__ import annotations

import html
import json
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

try:
    import shopkit
except ImportError:  # run from the source tree: the release build copies it in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shared"))
    import shopkit

JSON = "application/json"


def data_dir() -> Path:
    # Without DATA_DIR, instances of any release on this machine share one
    # directory, so the counter survives deploys like a real database would.
    default = Path(tempfile.gettempdir()) / f"conveyor-shop-{os.getuid()}"
    return Path(os.environ.get("DATA_DIR") or default)


def postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgresql://", "postgres://")) else None


def connect() -> sqlite3.Connection:
    # Several instances (old and new releases) share the file: WAL lets readers
    # run beside a writer, the busy timeout queues the writers.
    db = sqlite3.connect(data_dir() / "counter.db", timeout=10, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 10000")
    # In WAL mode NORMAL cannot corrupt the file; it only skips the fsync per commit.
    db.execute("PRAGMA synchronous = NORMAL")
    return db


def init_db() -> None:
    if postgres_url() is not None:
        shopkit.log("api", "counter database: PostgreSQL (DATABASE_URL), schema by Alembic")
        return
    data_dir().mkdir(parents=True, exist_ok=True)
    db = connect()
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS counter"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)"
        )
        db.execute("INSERT OR IGNORE INTO counter (id, value) VALUES (1, 0)")
    finally:
        db.close()
    shopkit.log("api", f"counter database: {data_dir() / 'counter.db'}")


def read_count() -> int:
    url = postgres_url()
    if url is not None:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()
            return int(row[0]) if row else 0
    db = connect()
    try:
        return int(db.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0])
    finally:
        db.close()


def increment() -> int:
    url = postgres_url()
    if url is not None:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute(
                "UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value"
            ).fetchone()
            return int(row[0]) if row else 0
    db = connect()
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE counter SET value = value + 1 WHERE id = 1")
        count = int(db.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0])
        db.execute("COMMIT")
        return count
    finally:
        db.close()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>shop api</title>
<style>body{{font:16px system-ui,sans-serif;margin:3rem auto;max-width:32rem;color:#222}}
code{{background:#f3f3f3;padding:.1rem .3rem;border-radius:.2rem}}</style></head>
<body><h1>shop api</h1>
<p>release <code>{release}</code> in <code>{environment}</code></p>
<p>counter: <strong>{count}</strong></p>
</body></html>
"""


class ApiHandler(shopkit.Handler):
    service = "api"
    prefix = "/api"

    def route(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if path == "/counter":
            if method == "POST":
                return 200, JSON, json.dumps({"count": increment()}).encode()
            return 200, JSON, json.dumps({"count": read_count()}).encode()
        if path == "/" and method == "GET":
            version = self.version()
            page = PAGE.format(
                release=html.escape(str(version["release"])),
                environment=html.escape(str(version["environment"])),
                count=read_count(),
            )
            return 200, "text/html; charset=utf-8", page.encode()
        return super().route(method, path, query)


if __name__ == "__main__":
    shopkit.run(ApiHandler, default_port=8000, on_start=init_db)
