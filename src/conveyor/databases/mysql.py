"""MySQL and MariaDB: `mariadb-dump --single-transaction` (or `mysqldump`), and the client.

The dump is a SQL text file. While it streams into its file, the rows of
each table are counted from the dump itself (`DumpRowCounter`), so the
recorded counts are exactly the dump's snapshot, even while the application
writes. Reading back re-reads the whole file, checks that it ends with the
tool's "Dump completed" line (a truncated dump restores silently
otherwise) and counts the rows again. A restore drops the tables the backup
does not have, then replays the dump. MySQL's DDL is not transactional, so a
restore is not atomic: it is what `on_failure: restore` is for, and why a
verified backup is taken first.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conveyor.databases.base import (
    CHUNK,
    BackupResult,
    HashingSink,
    ReadBack,
    Tool,
    find_tool,
    finish_file,
    partial_path,
    quote_ident,
    run_tool,
)
from conveyor.databases.urls import MYSQL, DatabaseUrl
from conveyor.errors import BackupCorruptError, DatabaseError
from conveyor.redaction import redact_text

CONNECT_TIMEOUT_S = 10
FORMAT = "mariadb-dump sql"
DUMP_OPTIONS = [
    "--single-transaction",  # a consistent snapshot without locking InnoDB tables
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--no-tablespaces",
    "--default-character-set=utf8mb4",
]
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES ?")
_CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
_STRING = re.compile(rb"'(?:[^'\\]|\\.)*'")
_COMPLETED = b"-- Dump completed"


class DumpRowCounter:
    """Counts the rows of each table in a mariadb-dump/mysqldump stream, fed in chunks.

    The dump tools escape newlines inside strings, so a dump is processed
    line by line; inside `INSERT INTO ... VALUES`, with string literals
    removed, each "(" starts one row (the tools write literals only, never
    function calls). Works for both layouts: all rows on the INSERT's line
    (older tools) or one row per line (MariaDB 10.11+).

    >>> counter = DumpRowCounter()
    >>> counter.feed(b"CREATE TABLE `t` (\\n`id` int\\n);\\nINSERT INTO `t` VALUES\\n(1,'a(b'),\\n")
    >>> counter.feed(b"(2,'c\\\\'),(d');\\nINSERT INTO `t` VALUES (3,NULL);\\n")
    >>> counter.feed(b"-- Dump completed on x\\n")
    >>> counter.close(), counter.completed
    ({'t': 3}, True)
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.completed = False
        self._table: str | None = None
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def close(self) -> dict[str, int]:
        if self._rest:
            self._line(self._rest)
            self._rest = b""
        return dict(self.counts)

    def _line(self, line: bytes) -> None:
        if self._table is None:
            insert = _INSERT.match(line)
            if insert is None:
                create = _CREATE.match(line)
                if create is not None:
                    self.counts.setdefault(_name(create[1]), 0)
                elif line.startswith(_COMPLETED):
                    self.completed = True
                return
            self._table = _name(insert[1])
            self.counts.setdefault(self._table, 0)
            line = line[insert.end() :]
        values = _STRING.sub(b"''", line)
        self.counts[self._table] += values.count(b"(")
        if values.rstrip().endswith(b";"):
            self._table = None


def _name(raw: bytes) -> str:
    return raw.decode(errors="replace").replace("``", "`")


class MysqlDatabase:
    """A MySQL or MariaDB database reached by URL (the client tools and PyMySQL)."""

    def __init__(self, url: DatabaseUrl) -> None:
        if url.engine != MYSQL:  # pragma: no cover - chosen by `database_for`
            raise ValueError(f"not a MySQL URL: {url.display()}")
        self.url = url

    def _secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.url.password,) if s)

    # -- tools ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _credentials(self) -> Iterator[Path]:
        """An option file with the connection settings: the password never is on a command
        line (where `ps` shows it) nor in the environment of every child."""
        # protocol=tcp: the tools would take "localhost" for the unix socket, the
        # driver for TCP; both must reach the same server.
        lines = ["[client]", "protocol=tcp"]
        for key, value in (
            ("host", self.url.host or "localhost"),
            ("port", self.url.port),
            ("user", self.url.user),
            ("password", self.url.password),
        ):
            if value is not None:
                escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f'{key}="{escaped}"')
        with tempfile.TemporaryDirectory(prefix="conveyor-mysql-") as tmp:
            path = Path(tmp) / "client.cnf"
            path.write_text("\n".join(lines) + "\n")
            path.chmod(0o600)
            yield path

    def _tool(self, names: tuple[str, ...], options: Path, args: list[str]) -> Tool:
        binary = find_tool(*names, package="mariadb-client")
        return Tool(
            Path(binary).name,
            [binary, f"--defaults-extra-file={options}", *args],
            {},
            self._secrets(),
        )

    # -- the protocol -----------------------------------------------------------------------

    async def backup(self, dest: Path) -> BackupResult:
        started = time.monotonic()
        version = await self._query_one("SELECT VERSION()")
        partial = partial_path(dest)
        sink = HashingSink()
        counter = DumpRowCounter()

        def take(chunk: bytes) -> None:
            sink(chunk)
            counter.feed(chunk)

        with self._credentials() as options:
            tool = self._tool(
                ("mariadb-dump", "mysqldump"), options, [*DUMP_OPTIONS, self.url.name]
            )
            try:
                await run_tool(
                    tool, f"backup of {self.url.display()}", stdout=partial, on_chunk=take
                )
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        tables = counter.close()
        if not counter.completed:
            partial.unlink(missing_ok=True)
            raise DatabaseError(
                f"backup of {self.url.display()}: {tool.name} ended without its "
                '"Dump completed" line; the dump is incomplete'
            )
        finish_file(partial, dest)
        return sink.result(dest, started, FORMAT, tables, version)

    async def read_back(self, path: Path) -> ReadBack:
        counter = await asyncio.to_thread(_scan, path)
        if not counter.completed:
            raise BackupCorruptError(
                f'backup {path.name} does not end with the dump tool\'s "Dump completed" line: '
                "it is truncated",
                hint="take a new backup",
            )
        return ReadBack(counter.counts, "read the whole dump, which ends as the tool ends it")

    async def restore(self, path: Path, into: DatabaseUrl | None = None) -> None:
        target = into or self.url
        counter = await asyncio.to_thread(_scan, path)
        keep = set(counter.counts)
        extra = sorted(set(await self._base_tables(target)) - keep)
        if extra:
            drops = ", ".join(quote_ident(t, "`") for t in extra)
            await self._execute(target, "SET FOREIGN_KEY_CHECKS = 0", f"DROP TABLE {drops}")
        with self._credentials() as options:
            tool = self._tool(
                ("mariadb", "mysql"),
                options,
                ["--default-character-set=utf8mb4", "--batch", target.name],
            )
            await run_tool(tool, f"restore {path.name} into {target.display()}", stdin=path)

    async def row_counts(self, url: DatabaseUrl | None = None) -> dict[str, int]:
        target = url or self.url

        def count() -> dict[str, int]:
            with self._connection(target) as conn, conn.cursor() as cursor:
                counts = {}
                for name in _base_tables(cursor, target.name):
                    # an identifier read from information_schema, quoted
                    cursor.execute(f"SELECT COUNT(*) FROM {quote_ident(name, '`')}")  # noqa: S608
                    counts[name] = int(cursor.fetchone()[0])
                return counts

        return await asyncio.to_thread(count)

    async def create_scratch(self, name: str) -> DatabaseUrl:
        scratch = self.url.with_name(name)
        try:
            await self._execute(self.url, f"CREATE DATABASE {quote_ident(name, '`')}")
        except DatabaseError as error:
            raise DatabaseError(
                f"cannot create the scratch database {name}: {error.message}",
                hint="the restore test needs the CREATE privilege; or verify with "
                "`verify: read` instead",
            ) from None
        return scratch

    async def drop_scratch(self, url: DatabaseUrl) -> None:
        await self._execute(self.url, f"DROP DATABASE IF EXISTS {quote_ident(url.name, '`')}")

    # -- SQL --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self, url: DatabaseUrl) -> Iterator[Any]:
        try:
            import pymysql
        except ImportError:
            raise DatabaseError(
                "MySQL and MariaDB databases need the PyMySQL driver",
                hint="pip install 'conveyor-deploy[mysql]'",
            ) from None
        try:
            conn = pymysql.connect(
                host=url.host or "localhost",
                port=url.port or 3306,
                user=url.user or "",
                password=url.password or "",
                database=url.name,
                connect_timeout=CONNECT_TIMEOUT_S,
                autocommit=True,
                charset="utf8mb4",
            )
        except pymysql.MySQLError as exc:
            raise DatabaseError(
                f"cannot connect to {url.display()}: {redact_text(str(exc), self._secrets())}",
                hint="check the database URL and that the server accepts connections",
            ) from None
        try:
            yield conn
        finally:
            conn.close()

    async def _execute(self, url: DatabaseUrl, *statements: str) -> None:
        def run() -> None:
            import pymysql

            with self._connection(url) as conn, conn.cursor() as cursor:
                for statement in statements:
                    try:
                        cursor.execute(statement)
                    except pymysql.MySQLError as exc:
                        raise DatabaseError(
                            f"{url.display()}: {redact_text(str(exc), self._secrets())}"
                        ) from None

        await asyncio.to_thread(run)

    async def _query_one(self, sql: str) -> Any:
        def run() -> Any:
            with self._connection(self.url) as conn, conn.cursor() as cursor:
                cursor.execute(sql)
                row = cursor.fetchone()
                return row[0] if row else None

        return await asyncio.to_thread(run)

    async def _base_tables(self, url: DatabaseUrl) -> list[str]:
        def names() -> list[str]:
            with self._connection(url) as conn, conn.cursor() as cursor:
                return _base_tables(cursor, url.name)

        return await asyncio.to_thread(names)


def _base_tables(cursor: Any, schema: str) -> list[str]:
    cursor.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
        (schema,),
    )
    return [str(row[0]) for row in cursor.fetchall()]


def _scan(path: Path) -> DumpRowCounter:
    counter = DumpRowCounter()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            counter.feed(chunk)
    counter.close()
    return counter
