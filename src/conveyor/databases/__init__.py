"""Databases of a project: URLs, the engines (PostgreSQL, MySQL/MariaDB, SQLite), backups.

`database_for(url)` gives the engine for a URL; every engine implements the
`Database` protocol (`conveyor.databases.base`) with the real tools.
"""

from __future__ import annotations

from conveyor.databases.base import BackupResult, Database, ReadBack
from conveyor.databases.urls import (
    ENGINES,
    MYSQL,
    POSTGRESQL,
    SQLITE,
    DatabaseUrl,
    DatabaseUrlError,
    parse_database_url,
)


def database_for(url: DatabaseUrl) -> Database:
    """The engine that handles `url`."""
    if url.engine == POSTGRESQL:
        from conveyor.databases.postgres import PostgresDatabase

        return PostgresDatabase(url)
    if url.engine == MYSQL:
        from conveyor.databases.mysql import MysqlDatabase

        return MysqlDatabase(url)
    from conveyor.databases.sqlite import SqliteDatabase

    return SqliteDatabase(url)


__all__ = [
    "ENGINES",
    "MYSQL",
    "POSTGRESQL",
    "SQLITE",
    "BackupResult",
    "Database",
    "DatabaseUrl",
    "DatabaseUrlError",
    "ReadBack",
    "database_for",
    "parse_database_url",
]
