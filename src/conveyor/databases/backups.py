"""Taking, verifying, pruning and restoring backups of a project's databases.

A backup is a file written by the engine's own tool plus a record in the
state store (size, sha256, duration, rows per table as of its snapshot).
Verifying one first checks that the file is still the one recorded (size
and sha256), then reads it back with the engine, and with `restore` also
restores it into a scratch database and compares every table's row count.
Restoring takes and verifies a backup of the current state first, so a
restore is never a one-way door.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.databases import database_for, parse_database_url
from conveyor.databases.base import Database, compare_tables, file_sha256
from conveyor.databases.urls import MYSQL, POSTGRESQL, DatabaseUrl
from conveyor.errors import BackupCorruptError, DatabaseError, UsageError
from conveyor.store.records import BackupRecord

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig
    from conveyor.paths import Paths
    from conveyor.store import Store

Progress = Callable[[str], None]
SUFFIXES = {POSTGRESQL: ".dump", MYSQL: ".sql"}  # SQLite: ".sqlite3"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class BackupTarget:
    """A configured database as one environment sees it, and where its backups go."""

    name: str
    environment: str | None
    url: DatabaseUrl
    directory: Path
    keep: int
    verify: str  # "read" | "restore"
    before_migrate: bool

    def database(self) -> Database:
        return database_for(self.url)


def backup_target(
    loaded: LoadedConfig, paths: Paths, name: str, environment: str | None = None
) -> BackupTarget:
    """Database `name` of the project, with `environment`'s URL when it has its own."""
    config = loaded.config
    url = parse_database_url(config.database_url(name, environment), base_dir=loaded.root)
    settings = config.databases[name].backup
    directory = (
        loaded.root / settings.directory if settings.directory else paths.backups / name
    ).resolve()
    return BackupTarget(
        name=name,
        environment=environment,
        url=url,
        directory=directory,
        keep=settings.keep,
        verify=settings.verify,
        before_migrate=settings.before_migrate,
    )


def new_backup_id(target: BackupTarget) -> str:
    """Sortable and unique: `main-production-20261201-093012-7f3a`."""
    where = f"-{target.environment}" if target.environment else ""
    return f"{target.name}{where}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


async def take_backup(
    store: Store,
    target: BackupTarget,
    *,
    user: str,
    reason: str,
    deployment_id: str | None = None,
    progress: Progress = _quiet,
) -> BackupRecord:
    """Write a backup of the database, record it and say so; not verified yet."""
    backup_id = new_backup_id(target)
    target.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest = target.directory / f"{backup_id}{SUFFIXES.get(target.url.engine, '.sqlite3')}"
    progress(f"backing up {target.url.display()} to {dest}")
    result = await target.database().backup(dest)
    record = BackupRecord(
        id=backup_id,
        database=target.name,
        environment=target.environment,
        engine=target.url.engine,
        url=target.url.redacted(),
        path=str(result.path),
        format=result.format,
        size=result.size,
        sha256=result.sha256,
        created_at=datetime.now(UTC),
        duration_s=result.duration_s,
        created_by=user,
        tables=result.tables,
        reason=reason,
        deployment_id=deployment_id,
        server_version=result.server_version,
    )
    store.add_backup(record)
    rows = sum(result.tables.values())
    store.add_event(
        "backup",
        f"backup {backup_id} of {target.name}: {human_size(result.size)}, {len(result.tables)} "
        f"tables, {rows} rows, {result.duration_s:.1f} s ({reason})",
        target.environment,
        deployment_id,
        {"backup": backup_id, "sha256": result.sha256, "size": result.size},
    )
    progress(
        f"backup {backup_id}: {human_size(result.size)} in {result.duration_s:.1f} s, "
        f"{len(result.tables)} tables, {rows} rows, sha256 {result.sha256[:12]}"
    )
    return record


async def verify_backup(
    store: Store,
    record: BackupRecord,
    database: Database,
    mode: str,
    progress: Progress = _quiet,
) -> str:
    """Check the backup file against its record and read it back (`mode` "read"), or also
    restore it into a scratch database and compare row counts (`mode` "restore").

    Records the outcome either way; raises `BackupCorruptError` when it fails.
    """
    started = time.monotonic()
    try:
        detail = await _verify(record, database, mode)
    except BackupCorruptError as error:
        store.set_backup_verification(
            record.id,
            mode=mode,
            ok=False,
            detail=error.message,
            at=datetime.now(UTC),
            duration_s=round(time.monotonic() - started, 3),
        )
        raise
    took = round(time.monotonic() - started, 3)
    store.set_backup_verification(
        record.id, mode=mode, ok=True, detail=detail, at=datetime.now(UTC), duration_s=took
    )
    progress(f"verified backup {record.id} ({mode}) in {took:.1f} s: {detail}")
    return detail


async def _verify(record: BackupRecord, database: Database, mode: str) -> str:
    path = Path(record.path)
    if not path.exists():
        raise BackupCorruptError(
            f"backup {record.id}: its file {path} is gone", hint="take a new backup"
        )
    size, digest = await asyncio.to_thread(file_sha256, path)
    if (size, digest) != (record.size, record.sha256):
        raise BackupCorruptError(
            f"backup {record.id} changed since it was taken: {human_size(size)} with sha256 "
            f"{digest[:12]}, recorded {human_size(record.size)} with sha256 {record.sha256[:12]}",
            hint="the file was damaged or replaced; take a new backup",
        )
    read = await database.read_back(path)
    if read.tables is not None:
        problems = compare_tables(record.tables, read.tables)
        if problems:
            raise BackupCorruptError(
                f"backup {record.id} does not hold what was recorded: " + "; ".join(problems[:5]),
                hint="take a new backup",
            )
    if mode != "restore":
        return f"sha256 matches; {read.detail}"
    scratch = await database.create_scratch(f"conveyor_verify_{secrets.token_hex(4)}")
    try:
        try:
            await database.restore(path, into=scratch)
        except DatabaseError as error:
            raise BackupCorruptError(
                f"backup {record.id} does not restore: {error.message}", hint=error.hint
            ) from None
        problems = compare_tables(record.tables, await database.row_counts(scratch))
    finally:
        await database.drop_scratch(scratch)
    if problems:
        raise BackupCorruptError(
            f"backup {record.id} restored with other row counts than recorded: "
            + "; ".join(problems[:5]),
            hint="take a new backup",
        )
    rows = sum(record.tables.values())
    return (
        f"sha256 matches; {read.detail}; restored into a scratch database: "
        f"{len(record.tables)} tables, {rows} rows, as recorded"
    )


def prune_backups(
    store: Store,
    target: BackupTarget,
    keep_ids: set[str],
    only: Callable[[BackupRecord], bool] = lambda _: True,
) -> list[str]:
    """Delete the oldest backups of the database (in this environment, those `only`
    accepts) beyond `keep`.

    Never deletes one in `keep_ids` (the one just taken, one a deployment needs).
    Returns the ids deleted.
    """
    mine = [
        b
        for b in store.list_backups(target.name)
        if b.environment == target.environment and only(b)
    ]
    deleted = []
    for record in mine[target.keep :]:
        if record.id in keep_ids:
            continue
        Path(record.path).unlink(missing_ok=True)
        store.delete_backup(record.id)
        deleted.append(record.id)
    return deleted


def prune_job_backups(
    store: Store, target: BackupTarget, created_by: str, keep: int, keep_ids: set[str]
) -> list[str]:
    """Delete the oldest backups a scheduled job took (`created_by` it, of the database in
    this environment) beyond its `keep`; never one in `keep_ids`. Returns the ids deleted."""
    return prune_backups(
        store,
        replace(target, keep=keep),
        keep_ids,
        only=lambda record: record.created_by == created_by,
    )


async def restore_backup(
    store: Store,
    target: BackupTarget,
    record: BackupRecord,
    *,
    user: str,
    reason: str,
    deployment_id: str | None = None,
    progress: Progress = _quiet,
) -> BackupRecord:
    """Replace the database's contents by the backup's; returns the backup of the state
    before, taken and verified first."""
    if record.database != target.name:
        raise UsageError(f"backup {record.id} is of database {record.database}, not {target.name}")
    database = target.database()
    await verify_backup(store, record, database, "read", progress)
    before = await take_backup(
        store,
        target,
        user=user,
        reason=f"state before restoring {record.id}",
        deployment_id=deployment_id,
        progress=progress,
    )
    await verify_backup(store, before, database, "read", progress)
    progress(f"restoring {record.id} into {target.url.display()}")
    started = time.monotonic()
    await database.restore(Path(record.path))
    problems = compare_tables(record.tables, await database.row_counts())
    if problems:
        raise DatabaseError(
            f"restored {record.id}, but the row counts differ from the backup's: "
            + "; ".join(problems[:5]),
            hint=f"the state before the restore is in backup {before.id}",
        )
    took = time.monotonic() - started
    store.add_event(
        "restore",
        f"{target.name} restored from {record.id} by {user} in {took:.1f} s ({reason}); "
        f"the state before is in {before.id}",
        target.environment,
        deployment_id,
        {"backup": record.id, "before": before.id},
    )
    progress(f"restored {record.id} in {took:.1f} s; the state before is in backup {before.id}")
    return before


def human_size(size: float) -> str:
    """`1536` -> "1.5 KB"."""
    units = ("B", "KB", "MB", "GB", "TB")
    value = float(size)
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover
