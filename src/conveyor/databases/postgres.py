"""PostgreSQL: `pg_dump -Fc` inside an exported snapshot, `pg_restore` to read back and restore.

The backup opens a repeatable-read transaction, exports its snapshot, counts
every table's rows in it and runs `pg_dump --snapshot` on that same
snapshot, so the recorded row counts are exactly the dump's, even while the
application keeps writing. Reading back is `pg_restore -f /dev/null`, which
reads and decompresses the whole archive. A restore drops the tables the
backup does not have (a half-applied migration's), then runs `pg_restore
--clean --if-exists --single-transaction`: it applies completely or not at
all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.databases.base import (
    BackupResult,
    HashingSink,
    ReadBack,
    Tool,
    find_tool,
    finish_file,
    partial_path,
    run_tool,
    split_qualified,
)
from conveyor.databases.urls import POSTGRESQL, DatabaseUrl
from conveyor.errors import BackupCorruptError, DatabaseError
from conveyor.redaction import redact_text

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_S = 10
FORMAT = "pg_dump custom"
_USER_TABLES = """
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
    ORDER BY 1, 2
"""


class PostgresDatabase:
    """A PostgreSQL database reached by URL (libpq tools and psycopg)."""

    def __init__(self, url: DatabaseUrl) -> None:
        if url.engine != POSTGRESQL:  # pragma: no cover - chosen by `database_for`
            raise ValueError(f"not a PostgreSQL URL: {url.display()}")
        self.url = url

    # -- connections and tools -----------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.url.password,) if s)

    async def _connect(self, url: DatabaseUrl | None = None) -> psycopg.AsyncConnection[Any]:
        try:
            import psycopg
        except ImportError:
            raise DatabaseError(
                "PostgreSQL databases need the psycopg driver",
                hint="pip install 'conveyor-deploy[postgres]'",
            ) from None
        target = url or self.url
        params: dict[str, Any] = {
            "dbname": target.name,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "conveyor",
        }
        for key, value in (("host", target.host), ("port", target.port), ("user", target.user)):
            if value is not None:
                params[key] = value
        if target.password is not None:
            params["password"] = target.password
        params.update(dict(target.options))
        try:
            return await psycopg.AsyncConnection.connect(**params)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to {target.display()}: "
                f"{redact_text(str(exc).strip(), self._secrets())}",
                hint="check the database URL and that the server accepts connections",
            ) from None

    def _tool(self, name: str, args: list[str], url: DatabaseUrl | None = None) -> Tool:
        target = url or self.url
        env = {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S), "PGAPPNAME": "conveyor"}
        if target.host:
            env["PGHOST"] = target.host
        if target.port:
            env["PGPORT"] = str(target.port)
        if target.user:
            env["PGUSER"] = target.user
        if target.password is not None:
            env["PGPASSWORD"] = target.password
        if target.option("sslmode"):
            env["PGSSLMODE"] = str(target.option("sslmode"))
        binary = find_tool(name, package="postgresql-client")
        return Tool(name, [binary, *args], env, self._secrets())

    # -- the protocol -----------------------------------------------------------------------

    async def backup(self, dest: Path) -> BackupResult:
        started = time.monotonic()
        partial = partial_path(dest)
        conn = await self._connect()
        try:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = await _scalar(conn, "SELECT pg_export_snapshot()")
            version = await _scalar(conn, "SHOW server_version")
            sink = HashingSink()
            tool = self._tool(
                "pg_dump", ["--format=custom", f"--snapshot={snapshot}", self.url.name]
            )
            dump = asyncio.create_task(
                run_tool(tool, f"backup of {self.url.display()}", stdout=partial, on_chunk=sink)
            )
            try:
                # Counted while pg_dump runs, in the snapshot it dumps.
                tables = await _count_rows(conn)
                await dump
            except BaseException:
                dump.cancel()
                with contextlib.suppress(BaseException):
                    await dump
                partial.unlink(missing_ok=True)
                raise
            await conn.execute("COMMIT")
        finally:
            await conn.close()
        finish_file(partial, dest)
        return sink.result(dest, started, FORMAT, tables, version)

    async def read_back(self, path: Path) -> ReadBack:
        tool = self._tool("pg_restore", ["--file=/dev/null", str(path)])
        try:
            await run_tool(tool, f"read back {path.name}")
        except DatabaseError as error:
            raise BackupCorruptError(
                f"backup {path.name} does not read back: {error.message}",
                hint="the file is damaged or truncated; take a new backup",
            ) from None
        return ReadBack(None, "pg_restore read the whole archive")

    async def restore(self, path: Path, into: DatabaseUrl | None = None) -> None:
        target = into or self.url
        listing = await run_tool(
            self._tool("pg_restore", ["--list", str(path)]), f"read {path.name}"
        )
        keep = _archive_tables(listing.decode(errors="replace"))
        from psycopg import sql

        conn = await self._connect(target)
        try:
            await conn.set_autocommit(True)
            for qualified in sorted(set(await _tables(conn)) - keep):
                schema, table = split_qualified(qualified)
                await conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                )
        finally:
            await conn.close()
        args = ["--clean", "--if-exists", "--single-transaction", "--exit-on-error"]
        if into is not None:
            args += ["--no-owner", "--no-acl"]  # a scratch database belongs to us
        args += [f"--dbname={target.name}", str(path)]
        await run_tool(
            self._tool("pg_restore", args, target), f"restore {path.name} into {target.display()}"
        )

    async def row_counts(self, url: DatabaseUrl | None = None) -> dict[str, int]:
        conn = await self._connect(url)
        try:
            return await _count_rows(conn)
        finally:
            await conn.close()

    async def table_rows(self, tables: Sequence[str], enough: int) -> dict[str, int]:
        """About how many rows each of `tables` has ("public." may be left out): the
        planner's estimate (pg_class.reltuples) when it reaches `enough`, otherwise a
        count that stops at `enough`. Tables that do not exist are left out."""
        from psycopg import sql

        rows: dict[str, int] = {}
        conn = await self._connect()
        try:
            await conn.set_autocommit(True)
            await conn.execute("SET statement_timeout = '10s'")
            for table in tables:
                parts = table.split(".")
                name = sql.SQL(".").join(sql.Identifier(p) for p in parts)
                found = await (
                    await conn.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                        (name.as_string(conn),),
                    )
                ).fetchone()
                if found is None:
                    continue
                if found[0] >= enough:
                    rows[table] = int(found[0])
                    continue
                bounded = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) AS sample")
                counted = await (
                    await conn.execute(bounded.format(name, sql.Literal(enough)))
                ).fetchone()
                rows[table] = int(counted[0]) if counted is not None else enough
        finally:
            await conn.close()
        return rows

    async def create_scratch(self, name: str) -> DatabaseUrl:
        from psycopg import sql

        scratch = self.url.with_name(name)
        conn = await self._connect()
        try:
            await conn.set_autocommit(True)
            await conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        except Exception as exc:
            raise DatabaseError(
                f"cannot create the scratch database {name} on {self.url.display()}: "
                f"{redact_text(str(exc).strip(), self._secrets())}",
                hint="the restore test needs the CREATEDB privilege; or verify with "
                "`verify: read` instead",
            ) from None
        finally:
            await conn.close()
        return scratch

    async def drop_scratch(self, url: DatabaseUrl) -> None:
        from psycopg import sql

        conn = await self._connect()
        try:
            await conn.set_autocommit(True)
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(url.name))
            )
        finally:
            await conn.close()


async def _scalar(conn: psycopg.AsyncConnection[Any], query: Any) -> Any:
    cursor = await conn.execute(query)
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def _tables(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cursor = await conn.execute(_USER_TABLES)
    return [f"{schema}.{table}" for schema, table in await cursor.fetchall()]


async def _count_rows(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    from psycopg import sql

    counts: dict[str, int] = {}
    for qualified in await _tables(conn):
        schema, table = split_qualified(qualified)
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        counts[qualified] = int(await _scalar(conn, query))
    return counts


def _archive_tables(listing: str) -> set[str]:
    """Tables in a `pg_restore --list` table of contents, as `schema.table`.

    >>> sorted(_archive_tables("215; 1259 16386 TABLE public orders app\\n"
    ...                         "3350; 0 16386 TABLE DATA public orders app\\n"))
    ['public.orders']
    """
    found = set()
    for line in listing.splitlines():
        if line.startswith(";") or "; " not in line:
            continue
        parts = line.split("; ", 1)[1].split()
        # "<tableoid> <oid> TABLE <schema> <name> <owner>"
        if len(parts) >= 5 and parts[2] == "TABLE" and parts[3] != "DATA":
            found.add(f"{parts[3]}.{parts[4]}")
    return found
