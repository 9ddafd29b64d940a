"""`conveyor db backup|list|verify|restore`: the project's database backups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import JsonOption, YesOption, run, runtime
from conveyor.cli.output import confirm, emit_json, iso, local_time, progress, say

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.store.records import BackupRecord

app = typer.Typer(help="Back up, verify and restore the project's databases.", no_args_is_help=True)

EnvOption = typer.Option(
    None, "--env", "-e", help="Use the database's URL in this environment (if it has its own)."
)


def _silent(_: str) -> None:
    return None


@app.command("backup")
def db_backup(
    name: str = typer.Argument(..., help="Database (a key under databases: in conveyor.yml)."),
    environment: str | None = EnvOption,
    reason: str | None = typer.Option(None, "--message", "-m", help="Why (kept with it)."),
    as_json: bool = JsonOption,
) -> None:
    """Back up a database now, verify it as configured, and prune old backups."""
    from conveyor.databases.backups import prune_backups, take_backup, verify_backup

    rt = runtime()
    target = _target(rt, name, environment)
    report = _silent if as_json else progress

    async def go() -> BackupRecord:
        record = await take_backup(
            rt.store, target, user=rt.user, reason=reason or f"by hand ({rt.user})", progress=report
        )
        await verify_backup(rt.store, record, target.database(), target.verify, report)
        prune_backups(rt.store, target, {record.id})
        return record

    record = run(go())
    done = rt.store.get_backup(record.id) or record
    if as_json:
        emit_json(backup_json(done))
        return
    say(f"{done.id}  {done.path}")


@app.command("list")
def db_list(
    name: str | None = typer.Argument(None, help="Only this database."),
    as_json: bool = JsonOption,
) -> None:
    """List backups, newest first, with their verification."""
    from rich.table import Table

    from conveyor.cli.output import console
    from conveyor.databases.backups import human_size

    rt = runtime()
    if name is not None:
        rt.loaded.config.database_url(name)  # unknown names are a usage error
    records = rt.store.list_backups(name)
    if as_json:
        emit_json([backup_json(r) for r in records])
        return
    if not records:
        say("no backups yet" + (f" of {name}" if name else "") + ": conveyor db backup NAME")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("backup", "env", "taken", "size", "took", "tables", "rows", "verified"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.id,
            r.environment or "-",
            local_time(r.created_at),
            human_size(r.size),
            f"{r.duration_s:.1f}s",
            str(len(r.tables)),
            str(sum(r.tables.values())),
            _verification(r),
        )
    console().print(table)


@app.command("verify")
def db_verify(
    backup_id: str = typer.Argument(..., help="Backup id (see: conveyor db list)."),
    restore_test: bool = typer.Option(
        False,
        "--restore-test",
        help="Also restore it into a scratch database and compare every table's row count.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Check a backup: same bytes as recorded, reads back whole (and restores, with
    --restore-test). Exits 1 when it does not."""
    from conveyor.databases import database_for, parse_database_url

    rt = runtime()
    record = _backup(rt, backup_id)
    target = _target(rt, record.database, record.environment)
    url = target.url
    if record.engine != url.engine:
        url = parse_database_url(record.url, base_dir=rt.loaded.root)
    from conveyor.databases.backups import verify_backup

    report = _silent if as_json else progress
    mode = "restore" if restore_test else "read"
    run(verify_backup(rt.store, record, database_for(url), mode, report))
    done = rt.store.get_backup(record.id) or record
    if as_json:
        emit_json(backup_json(done))
        return
    say(f"{done.id}: ok ({mode}): {done.verify_detail}")


@app.command("restore")
def db_restore(
    name: str = typer.Argument(..., help="Database to restore."),
    backup_id: str = typer.Argument(..., help="Backup to restore it from."),
    environment: str | None = EnvOption,
    reason: str | None = typer.Option(None, "--message", "-m", help="Why (kept in history)."),
    yes: bool = YesOption,
) -> None:
    """Replace a database's contents with a backup (a backup of the current state is taken
    and verified first). Holds the environment's lock while it runs."""
    from conveyor.databases.backups import restore_backup
    from conveyor.engine.deployments import check_unfinished, lock_environment

    rt = runtime()
    target = _target(rt, name, environment)
    record = _backup(rt, backup_id)
    where = f" in {environment}" if environment else ""
    confirm(
        f"Replace everything in {target.url.display()} ({name}{where}) with backup {record.id} "
        f"of {local_time(record.created_at)}?",
        yes=yes,
    )
    why = reason or f"conveyor db restore by {rt.user}"

    async def go() -> BackupRecord:
        return await restore_backup(
            rt.store, target, record, user=rt.user, reason=why, progress=progress
        )

    if environment is None:
        before = run(go())
    else:
        check_unfinished(rt, environment)
        with lock_environment(rt, environment, f"restoring database {name} from {record.id}"):
            before = run(go())
    say(f"restored {name} from {record.id}; the state before is in backup {before.id}")


def _target(rt: Runtime, name: str, environment: str | None) -> Any:
    from conveyor.databases.backups import backup_target

    if environment is not None:
        rt.environment(environment)
    rt.loaded.config.database_url(name, environment)  # unknown names are a usage error
    return backup_target(rt.loaded, rt.paths, name, environment)


def _backup(rt: Runtime, backup_id: str) -> BackupRecord:
    from conveyor.errors import UsageError

    record = rt.store.get_backup(backup_id)
    if record is None:
        raise UsageError(f'unknown backup "{backup_id}"', hint="list them with: conveyor db list")
    return record


def _verification(r: BackupRecord) -> str:
    if r.verify_ok is None:
        return "never"
    outcome = "ok" if r.verify_ok else "FAILED"
    return f"{outcome} ({r.verify_mode}, {local_time(r.verified_at)})"


def backup_json(r: BackupRecord) -> dict[str, Any]:
    """A backup in `--json` output (documented in the README)."""
    return {
        "id": r.id,
        "database": r.database,
        "environment": r.environment,
        "engine": r.engine,
        "url": r.url,
        "path": r.path,
        "format": r.format,
        "size": r.size,
        "sha256": r.sha256,
        "created_at": iso(r.created_at),
        "duration_s": r.duration_s,
        "created_by": r.created_by,
        "reason": r.reason,
        "deployment_id": r.deployment_id,
        "tables": r.tables,
        "verification": None
        if r.verify_ok is None
        else {
            "ok": r.verify_ok,
            "mode": r.verify_mode,
            "at": iso(r.verified_at),
            "detail": r.verify_detail,
            "duration_s": r.verify_duration_s,
        },
    }
