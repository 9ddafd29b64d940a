"""What every database engine does (the `Database` protocol) and the plumbing they share.

The engines drive the real tools (`pg_dump`/`pg_restore`, `mariadb-dump`/
`mariadb`, SQLite's online backup API); this module runs those tools with
their password in the environment or a private file, never on the command
line, and streams a dump into its file while hashing it, so a backup is
read once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from conveyor.databases.urls import DatabaseUrl
from conveyor.environ import minimal_environment
from conveyor.errors import DatabaseError
from conveyor.redaction import redact_text

CHUNK = 1 << 20  # bytes read from a dump tool at a time
STDERR_TAIL = 20  # lines of a failing tool's stderr shown to the user


@dataclass(frozen=True)
class BackupResult:
    """A backup file as written: what the store records about it."""

    path: Path
    size: int
    sha256: str
    duration_s: float
    format: str  # "pg_dump custom", "mariadb-dump sql", "sqlite"
    tables: dict[str, int]  # rows per table as of the backup's snapshot
    server_version: str = ""


@dataclass(frozen=True)
class ReadBack:
    """What reading a backup back found: its rows per table when the format tells."""

    tables: dict[str, int] | None
    detail: str


class Database(Protocol):
    """One database of a project: back it up, read a backup back, restore one."""

    url: DatabaseUrl

    async def backup(self, dest: Path) -> BackupResult:
        """Write a consistent backup to `dest` (atomically: complete or absent)."""
        ...

    async def read_back(self, path: Path) -> ReadBack:
        """Read the whole backup; raise `BackupCorruptError` when it does not read back."""
        ...

    async def restore(self, path: Path, into: DatabaseUrl | None = None) -> None:
        """Make the database (or `into`) hold exactly the backup's tables and rows."""
        ...

    async def row_counts(self, url: DatabaseUrl | None = None) -> dict[str, int]:
        """Rows per table now, in the database (or in `url`, on the same server)."""
        ...

    async def create_scratch(self, name: str) -> DatabaseUrl:
        """A new empty database named `name` on the same server, for restore tests."""
        ...

    async def drop_scratch(self, url: DatabaseUrl) -> None:
        """Drop a database made by `create_scratch` (no-op when it is gone)."""
        ...


@dataclass
class Tool:
    """A command-line tool of an engine, run with a minimal, explicit environment."""

    name: str  # e.g. "pg_dump"
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # masked in anything shown

    def environ(self) -> dict[str, str]:
        return {**minimal_environment(), **self.env}

    def failure(self, what: str, code: int | None, stderr: bytes) -> DatabaseError:
        lines = stderr.decode(errors="replace").strip().splitlines()[-STDERR_TAIL:]
        shown = "\n".join(f"  {line}" for line in lines) or "  (no output)"
        tail = redact_text(shown, self.secrets)
        status = "was killed" if code is None or code < 0 else f"exited {code}"
        return DatabaseError(f"{what}: {self.name} {status}:\n{tail}")


def find_tool(*names: str, package: str) -> str:
    """The first of `names` on PATH; a clear error naming the package otherwise."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise DatabaseError(
        f"{' or '.join(names)} not found on PATH",
        hint=f"install it (Debian/Ubuntu: apt-get install {package})",
    )


async def run_tool(
    tool: Tool,
    what: str,
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    on_chunk: Callable[[bytes], None] | None = None,
) -> bytes:
    """Run `tool`; return its stdout unless `stdout` or `on_chunk` takes it.

    With `stdout`, the output is written there as it comes (and passed to
    `on_chunk` first). Raises `DatabaseError` with the tail of stderr when the
    tool fails, and an error saying so when the disk is full.
    """
    stdin_file = stdin.open("rb") if stdin is not None else None
    try:
        proc = await asyncio.create_subprocess_exec(
            *tool.argv,
            stdin=stdin_file if stdin_file is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=tool.environ(),
            start_new_session=True,
        )
    except OSError as exc:
        raise DatabaseError(f"{what}: cannot run {tool.name}: {exc.strerror}") from None
    finally:
        if stdin_file is not None:
            stdin_file.close()
    assert proc.stdout is not None and proc.stderr is not None
    stderr_task = asyncio.create_task(proc.stderr.read())
    collected = bytearray()
    try:
        with _output(stdout) as sink:
            while chunk := await proc.stdout.read(CHUNK):
                if on_chunk is not None:
                    on_chunk(chunk)
                if sink is not None:
                    _write_all(sink, chunk, stdout)
                elif on_chunk is None:
                    collected += chunk
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        stderr_task.cancel()
        raise
    code = await proc.wait()
    stderr = await stderr_task
    if code != 0:
        raise tool.failure(what, code, stderr)
    return bytes(collected)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[int | None]:
    if path is None:
        yield None
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        yield fd
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, path: Path | None) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DatabaseError(
                    f"no space left on the device of {path} while writing the backup",
                    hint="free some space or point the backup directory elsewhere "
                    "(databases.<name>.backup.directory); nothing was changed",
                ) from None
            raise
        view = view[written:]


class HashingSink:
    """Counts and hashes what passes through it (the dump, as it is written)."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0

    def __call__(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        self.size += len(chunk)

    def result(
        self, path: Path, started: float, format: str, tables: dict[str, int], version: object
    ) -> BackupResult:
        """The backup written through this sink, `started` on the monotonic clock."""
        return BackupResult(
            path=path,
            size=self.size,
            sha256=self.sha256.hexdigest(),
            duration_s=elapsed_since(started),
            format=format,
            tables=tables,
            server_version=str(version),
        )


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read in large chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def partial_path(dest: Path) -> Path:
    """Where a backup is written before it is complete (renamed to `dest` at the end)."""
    return dest.with_name(f".{dest.name}.partial")


def finish_file(partial: Path, dest: Path) -> None:
    """Move a complete backup into place, durably."""
    partial.replace(dest)
    dir_fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def compare_tables(expected: Mapping[str, int], found: Mapping[str, int]) -> list[str]:
    """Differences between two row counts per table, one line each (empty: equal)."""
    problems = []
    for table in sorted(set(expected) | set(found)):
        want, got = expected.get(table), found.get(table)
        if want is None:
            problems.append(f"{table}: not in the backup's record, {got} rows restored")
        elif got is None:
            problems.append(f"{table}: {want} rows recorded, table missing after the restore")
        elif want != got:
            problems.append(f"{table}: {want} rows recorded, {got} restored")
    return problems


def elapsed_since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def quote_ident(name: str, quote: str = '"') -> str:
    """An SQL identifier quoted for PostgreSQL (`"`) or MySQL (backtick)."""
    return quote + name.replace(quote, quote * 2) + quote


def split_qualified(name: str) -> Sequence[str]:
    """`schema.table` -> ("schema", "table"); names Conveyor itself produced."""
    schema, _, table = name.partition(".")
    return (schema, table) if table else (name,)
