"""SQLite: the online backup API, `PRAGMA integrity_check` to read back, the backup API to restore.

`sqlite3.Connection.backup` copies a consistent snapshot page by page while
other connections keep reading and writing. The copy is itself a database:
reading it back opens it read-only, checks every page and counts the rows.
A restore copies the backup over the live database with the same API, in
one step, so the database is never half restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from conveyor.databases.base import (
    BackupResult,
    ReadBack,
    elapsed_since,
    file_sha256,
    finish_file,
    partial_path,
    quote_ident,
)
from conveyor.databases.urls import SQLITE, DatabaseUrl
from conveyor.errors import BackupCorruptError, DatabaseError

FORMAT = "sqlite"
BUSY_TIMEOUT_S = 30.0


class SqliteDatabase:
    """A SQLite database file."""

    def __init__(self, url: DatabaseUrl) -> None:
        if url.engine != SQLITE:  # pragma: no cover - chosen by `database_for`
            raise ValueError(f"not a SQLite URL: {url.display()}")
        self.url = url
        self.path = Path(url.name)

    async def backup(self, dest: Path) -> BackupResult:
        return await asyncio.to_thread(self._backup, dest)

    def _backup(self, dest: Path) -> BackupResult:
        started = time.monotonic()
        if not self.path.exists():
            raise DatabaseError(
                f"cannot back up {self.url.display()}: the file does not exist",
                hint="check the database URL (a relative sqlite path is relative to conveyor.yml)",
            )
        partial = partial_path(dest)
        partial.unlink(missing_ok=True)
        try:
            with _connect(self.path) as source, _connect(partial) as copy:
                source.backup(copy)
                version = sqlite3.sqlite_version
            with _connect(partial, read_only=True) as copy:
                tables = _count_rows(copy)
        except sqlite3.Error as exc:
            partial.unlink(missing_ok=True)
            raise _error(f"backup of {self.url.display()}", exc) from None
        partial.chmod(0o600)
        size, digest = file_sha256(partial)
        finish_file(partial, dest)
        return BackupResult(
            path=dest,
            size=size,
            sha256=digest,
            duration_s=elapsed_since(started),
            format=FORMAT,
            tables=tables,
            server_version=version,
        )

    async def read_back(self, path: Path) -> ReadBack:
        return await asyncio.to_thread(self._read_back, path)

    def _read_back(self, path: Path) -> ReadBack:
        try:
            with _connect(path, read_only=True) as copy:
                problems = [row[0] for row in copy.execute("PRAGMA integrity_check")]
                if problems != ["ok"]:
                    raise BackupCorruptError(
                        f"backup {path.name} fails SQLite's integrity check: "
                        + "; ".join(problems[:5]),
                        hint="take a new backup",
                    )
                tables = _count_rows(copy)
        except sqlite3.DatabaseError as exc:
            raise BackupCorruptError(
                f"backup {path.name} does not read back: {exc}", hint="take a new backup"
            ) from None
        return ReadBack(tables, "integrity_check ok, every table read")

    async def restore(self, path: Path, into: DatabaseUrl | None = None) -> None:
        target = Path(into.name) if into is not None else self.path
        await asyncio.to_thread(self._restore, path, target)

    def _restore(self, path: Path, target: Path) -> None:
        try:
            with _connect(path, read_only=True) as backup, _connect(target) as live:
                backup.backup(live)
        except sqlite3.Error as exc:
            raise _error(f"restore {path.name} into {target}", exc) from None

    async def row_counts(self, url: DatabaseUrl | None = None) -> dict[str, int]:
        path = Path(url.name) if url is not None else self.path

        def count() -> dict[str, int]:
            with _connect(path, read_only=True) as conn:
                return _count_rows(conn)

        return await asyncio.to_thread(count)

    async def create_scratch(self, name: str) -> DatabaseUrl:
        scratch = self.path.with_name(f".{name}.sqlite3")
        scratch.unlink(missing_ok=True)
        return self.url.with_name(str(scratch))

    async def drop_scratch(self, url: DatabaseUrl) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(url.name + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def _connect(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    else:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        yield conn
    finally:
        conn.close()


def _count_rows(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    # identifiers read from sqlite_schema, quoted
    return {
        name: int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0])  # noqa: S608
        for name in names
    }


def _error(what: str, exc: sqlite3.Error) -> DatabaseError:
    if "disk is full" in str(exc) or "database or disk is full" in str(exc):
        return DatabaseError(
            f"{what}: no space left on the device",
            hint="free some space or point the backup directory elsewhere "
            "(databases.<name>.backup.directory); nothing was changed",
        )
    return DatabaseError(f"{what}: {exc}")
