"""Executing the release phase: what is pending, the migration check, the backup, the
migration, a restore.

The steps run before any instance of the new release starts (see
`strategies.release_phase`). Each is safe to run again after a crash: a
backup already taken and verified for this deployment is reused, a
migration is run again (migration tools skip what they applied), a restore
takes a backup of the state before it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.config import command_argv
from conveyor.config.lint import SIZE_AWARE_RULES
from conveyor.config.models import MigrateConfig, SqlDirectory
from conveyor.databases.backups import (
    BackupTarget,
    backup_target,
    prune_backups,
    restore_backup,
    take_backup,
    verify_backup,
)
from conveyor.databases.frameworks import Django, detect
from conveyor.databases.lint import Finding, describe_findings, excuse, lint_parts
from conveyor.databases.urls import SQLITE
from conveyor.engine import failpoints, pending_migrations
from conveyor.engine.plan import (
    FORWARD,
    BackupDatabase,
    CheckMigration,
    Migrate,
    PendingMigrations,
    RestoreDatabase,
    Step,
)
from conveyor.engine.release_env import ReleaseContext
from conveyor.errors import DatabaseError, MigrationError
from conveyor.redaction import env_secrets, redact_text
from conveyor.runas import require_writable_sqlite
from conveyor.store.records import BackupRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

Progress = Callable[[str], None]
OUTPUT_LINES_ON_FAILURE = 20
PREVIEW_TIMEOUT_S = 120.0


class ReleasePhase:
    """Runs the release-phase steps of one deployment of one environment."""

    def __init__(
        self, rt: Runtime, environment: str, deployment_id: str, progress: Progress
    ) -> None:
        self.rt = rt
        self.environment = environment
        self.deployment_id = deployment_id
        self.progress = progress

    async def execute(
        self,
        step: PendingMigrations | CheckMigration | BackupDatabase | Migrate | RestoreDatabase,
    ) -> str | None:
        if isinstance(step, PendingMigrations):
            return await self.pending(step)
        if isinstance(step, CheckMigration):
            return await self.check(step)
        if isinstance(step, BackupDatabase):
            return await self.backup(step)
        if isinstance(step, Migrate):
            return await self.migrate(step)
        return await self.restore(step)

    # -- context -------------------------------------------------------------------------

    def target(self, database: str) -> BackupTarget:
        return backup_target(self.rt.loaded, self.rt.paths, database, self.environment)

    def _migrate_config(self, service: str) -> MigrateConfig:
        migrate = self.rt.loaded.config.service_for(self.environment, service).migrate
        if migrate is None:
            raise MigrationError(
                f"service {service} has no migrate: block any more",
                hint="the plan was made with another conveyor.yml; abort and deploy again",
            )
        return migrate

    def _context(self, service: str, release: str, database: str) -> ReleaseContext:
        """The release's directory, environment (with DATABASE_URL for `database`) and
        the user its commands run as."""
        from conveyor.engine.release_env import release_env, release_user

        record = self.rt.store.get_release(service, release)
        if record is None:
            raise MigrationError(
                f"release {release} of {service} is not in the store",
                hint="it may have been pruned; build and deploy again",
            )
        env = release_env(self.rt, self.environment, service, release)
        url = self.target(database).url
        env["DATABASE_URL"] = url.text
        cwd = Path(record.path)
        user = release_user(self.rt, self.environment, service, cwd)
        if user is not None and url.engine == SQLITE:
            require_writable_sqlite(Path(url.name), user)
        return ReleaseContext(cwd, env, user)

    def _log(self) -> Path:
        logs = self.rt.paths.deployment_logs
        logs.mkdir(parents=True, exist_ok=True)
        return logs / f"{self.deployment_id}.log"

    async def _run(
        self, what: str, command: list[str], context: ReleaseContext, timeout: float
    ) -> str:
        """Run a one-off command in a release's context; its output, or a MigrationError
        with the last lines of it."""
        _, output = await self._run_status(what, command, context, timeout)
        return output

    async def _run_status(
        self,
        what: str,
        command: list[str],
        context: ReleaseContext,
        timeout: float,
        accept: tuple[int, ...] = (0,),
    ) -> tuple[int, str]:
        """`_run`, where the exit codes in `accept` are answers: (exit code, output)."""
        log = self._log()
        with log.open("a") as handle:
            handle.write(f"--- {what}: {' '.join(command)}\n")
        cwd, env, user = context
        result = await self.rt.target_for(self.environment).run_command(
            command, cwd, env, timeout, log_path=log, user=user
        )
        if result.exit_code in accept and not result.timed_out:
            return result.exit_code, result.output
        secrets = env_secrets(env)
        lines = result.output.rstrip().splitlines()[-OUTPUT_LINES_ON_FAILURE:]
        tail = "\n".join(f"    {line}" for line in lines) or "    (no output)"
        status = (
            f"timed out after {timeout:g} s" if result.timed_out else f"exited {result.exit_code}"
        )
        raise MigrationError(
            f"{what} {status}; last lines:\n{redact_text(tail, secrets)}",
            hint=f"the whole output is in {log}",
        )

    def _runner(self, service: str, release: str, database: str) -> pending_migrations.Run:
        context = self._context(service, release, database)

        async def run(what: str, argv: list[str], accept: tuple[int, ...]) -> tuple[int, str]:
            return await self._run_status(what, argv, context, PREVIEW_TIMEOUT_S, accept)

        return run

    # -- skipping what has nothing to do -------------------------------------------------

    def _answers(self) -> dict[tuple[str, str], bool]:
        events = self.rt.store.list_events(deployment_id=self.deployment_id)
        return pending_migrations.answers([(e.kind, e.data) for e in events])

    def _planned(self, kind: str, database: str) -> list[str]:
        """The services of this deployment's forward steps of `kind` on `database`."""
        deployment = self.rt.store.get_deployment(self.deployment_id)
        plan = deployment.plan if deployment is not None else []
        return [
            str(s["service"])
            for s in plan
            if s.get("kind") == kind
            and s.get("database") == database
            and s.get("phase", FORWARD) == FORWARD
        ]

    def skip_reason(self, step: Step) -> str | None:
        """Why `step` has nothing to do (no pending migration), or None: it runs."""
        if step.phase != FORWARD:
            return None
        if isinstance(step, BackupDatabase):
            services = self._planned(Migrate.kind, step.database)
            answers = self._answers()
            if services and all(answers.get((s, step.database)) is False for s in services):
                return f"no pending migrations for db '{step.database}'"
            return None
        if not isinstance(step, CheckMigration | Migrate):
            return None
        if self._answers().get((step.service, step.database)) is False:
            return f"no pending migrations of {step.service} for db '{step.database}'"
        return None

    # -- the steps -----------------------------------------------------------------------

    async def pending(self, step: PendingMigrations) -> str:
        migrate = self._migrate_config(step.service)
        run = self._runner(step.service, step.release, step.database)
        found = await pending_migrations.ask_pending(run, migrate, step.service)
        listed = ", ".join(found.migrations)
        summary = (
            f"pending ({found.how}): {listed}"
            if found.pending and listed
            else f"pending ({found.how})"
            if found.pending
            else f"nothing pending ({found.how})"
        )
        self.rt.store.add_event(
            pending_migrations.EVENT,
            f"{step.service} {step.release} on {step.database}: {summary}",
            self.environment,
            self.deployment_id,
            {
                "service": step.service,
                "release": step.release,
                "database": step.database,
                "pending": found.pending,
                "migrations": list(found.migrations),
            },
        )
        if not found.pending:
            skipped = ["migrate"]
            backup = BackupDatabase(step.service, database=step.database)
            if self._planned(backup.kind, step.database) and self.skip_reason(backup):
                skipped.insert(0, "backup")
            self.progress(
                f"[{step.service}] no pending migrations for db '{step.database}': skipped "
                + " and ".join(skipped)
            )
        return summary

    async def check(self, step: CheckMigration) -> str:
        migrate = self._migrate_config(step.service)
        target = self.target(step.database)
        parts = await self._migration_sql(step, migrate)
        if parts is None:
            note = (
                f"no sql_preview for {step.service}: its migration's safety was not checked "
                "(set migrate.sql_preview)"
            )
            self.progress(f"[{step.service}] warning: {note}")
            return note
        settings = self.rt.loaded.config.databases[step.database].lint
        findings = lint_parts(parts, target.url.engine)
        rows = await self._table_rows(step, target, findings)
        findings, excused = excuse(findings, settings, rows, step.database)
        for item in excused:
            self.progress(f"[{step.service}] migration check: {item.describe()}")
        let_through = f"; {len(excused)} finding(s) let through by lint settings" * bool(excused)
        if not findings:
            return f"the migration's SQL keeps {step.previous} working{let_through}"
        listed = describe_findings(findings)
        one = len(findings) == 1
        count = f"{len(findings)} statement{'' if one else 's'}"
        breaks = "breaks" if one else "break"
        if step.allowed_by or step.warn_only:
            why = (
                f"allowed by {step.allowed_by} (--allow-breaking-migrations)"
                if step.allowed_by
                else "an immediate deploy does not run both releases at once"
            )
            self.progress(
                f"[{step.service}] warning: {count} of the migration {breaks} {step.previous}; "
                f"{why}:\n{listed}"
            )
            self.rt.store.add_event(
                "breaking_migration",
                f"{step.service} {step.release}: {count} {breaks} {step.previous}; {why}",
                self.environment,
                self.deployment_id,
                {"rules": [f.rule for f in findings], "lines": [f.line for f in findings]},
            )
            return f"{count} {breaks} {step.previous}, {why}: " + ", ".join(
                f"line {f.line} {f.rule}" for f in findings
            )
        raise MigrationError(
            f"the migration of {step.service} {step.release} breaks {step.previous}, which "
            f"keeps serving while the new release rolls out; {count}:\n{listed}",
            hint="make it backward compatible (expand now, contract in a later release), "
            f"allow what you checked by hand in databases.{step.database}.lint.allow (e.g. "
            f"{{rule: {findings[0].rule}, table: {findings[0].table or 'TABLE'}}}), or deploy "
            "with --allow-breaking-migrations (recorded in the journal)",
        )

    async def _migration_sql(
        self, step: CheckMigration, migrate: MigrateConfig
    ) -> list[tuple[str, str]] | None:
        """(migration, SQL) parts to lint: what sql_preview prints (one part), or for Django,
        what `sqlmigrate` prints for each pending migration; None when neither is there."""
        preview = migrate.sql_preview
        tool = detect(migrate.command)
        if preview is None and isinstance(tool, Django):
            run = self._runner(step.service, step.release, step.database)
            return await pending_migrations.django_sql(run, tool, step.service)
        if preview is None:
            return None
        context = self._context(step.service, step.release, step.database)
        if isinstance(preview, SqlDirectory):
            sql = await asyncio.to_thread(
                _new_sql_files, context.cwd, self._previous_dir(step), preview
            )
            return [("", sql)]
        sql = await self._run(
            f"sql_preview of {step.service}", command_argv(preview), context, PREVIEW_TIMEOUT_S
        )
        return [("", sql)]

    async def _table_rows(
        self, step: CheckMigration, target: BackupTarget, findings: list[Finding]
    ) -> dict[str, int]:
        """Rows of the tables whose findings depend on size, where the database can tell."""
        from conveyor.databases.postgres import PostgresDatabase

        settings = self.rt.loaded.config.databases[step.database].lint
        tables = sorted({f.table for f in findings if f.rule in SIZE_AWARE_RULES and f.table})
        database = target.database()
        if not tables or settings.small_table_rows == 0:
            return {}
        if not isinstance(database, PostgresDatabase):
            return {}
        try:
            return await database.table_rows(tables, settings.small_table_rows)
        except DatabaseError as error:
            self.progress(
                f"[{step.service}] warning: the sizes of {', '.join(tables)} are unknown, "
                f"so every table counts as large: {error.message}"
            )
            return {}

    def _previous_dir(self, step: CheckMigration) -> Path | None:
        release = self.rt.store.get_release(step.service, step.previous)
        return Path(release.path) if release is not None else None

    async def backup(self, step: BackupDatabase) -> str:
        target = self.target(step.database)
        done = self._backup_of_this_deployment(step.database, verified=True)
        if done is not None:
            return f"backup {done.id} (taken and verified before this step was interrupted)"
        if target.url.engine == SQLITE and not Path(target.url.name).exists():
            # A SQLite file is made by its first migration: there is nothing to lose yet.
            note = f"no backup: {target.url.display()} does not exist yet (its first migration)"
            self.progress(f"[{step.service}] {note}")
            return note
        record = await take_backup(
            self.rt.store,
            target,
            user=self.rt.user,
            reason=f"before the migration of deployment {self.deployment_id}",
            deployment_id=self.deployment_id,
            progress=self.progress,
        )
        failpoints.hit("release_phase.before_verify")
        await verify_backup(self.rt.store, record, target.database(), target.verify, self.progress)
        prune_backups(self.rt.store, target, {record.id})
        return f"backup {record.id}, verified ({target.verify})"

    def _backup_of_this_deployment(self, database: str, verified: bool) -> BackupRecord | None:
        """The newest backup of `database` this deployment took (verified, if asked)."""
        mine = (
            r
            for r in self.rt.store.list_backups(database)
            if r.deployment_id == self.deployment_id and r.environment == self.environment
        )
        return next((r for r in mine if r.verify_ok or not verified), None)

    async def migrate(self, step: Migrate) -> str:
        migrate = self._migrate_config(step.service)
        context = self._context(step.service, step.release, step.database)
        target = self.target(step.database)
        self.progress(f"[{step.service}] migrating {target.url.display()}")
        try:
            output = await self._run(
                f"migration of {step.service} {step.release}",
                command_argv(migrate.command),
                context,
                migrate.timeout,
            )
        except MigrationError as error:
            restore = "restore" if migrate.on_failure == "restore" else "keep"
            raise MigrationError(
                error.message,
                hint=f"{error.hint}; no traffic moved, the previous release keeps serving"
                + (
                    "; the database is restored from its backup next"
                    if restore == "restore"
                    else "; the database is left as the migration left it (on_failure: keep)"
                ),
            ) from None
        lines = [line for line in output.splitlines() if line.strip()]
        return f"migrated ({len(lines)} lines of output in {self._log()})"

    async def restore(self, step: RestoreDatabase) -> str:
        target = self.target(step.database)
        if step.backup:
            record = self.rt.store.get_backup(step.backup)
            if record is None:
                raise DatabaseError(f"backup {step.backup} is not in the state store any more")
        else:
            record = self._backup_of_this_deployment(step.database, verified=False)
            if record is None:
                raise DatabaseError(
                    f"deployment {self.deployment_id} took no backup of {step.database} to "
                    "restore (databases.<name>.backup.before_migrate is off)",
                    hint="restore one by hand: conveyor db list, then conveyor db restore",
                )
        before = await restore_backup(
            self.rt.store,
            target,
            record,
            user=self.rt.user,
            reason=f"deployment {self.deployment_id}",
            deployment_id=self.deployment_id,
            progress=self.progress,
        )
        return f"restored from {record.id}; the state before is in {before.id}"


def _new_sql_files(release_dir: Path, previous_dir: Path | None, preview: SqlDirectory) -> str:
    """The .sql files of the new release's directory that the running one does not have,
    in name order (migration files are named to sort: 0001_..., 0002_...)."""
    folder = release_dir / preview.directory
    if not folder.is_dir():
        raise MigrationError(
            f"sql_preview directory {preview.directory} is not in the release ({folder})",
            hint="check migrate.sql_preview.directory (relative to the service's source)",
        )
    known = set()
    if previous_dir is not None and (previous_dir / preview.directory).is_dir():
        known = {p.name for p in (previous_dir / preview.directory).glob("*.sql")}
    new = sorted(p for p in folder.glob("*.sql") if p.name not in known)
    return "\n".join(p.read_text() for p in new)
