"""Asking a release's migration tool what is pending (the `pending_migrations` step).

The commands run in the new release's directory with its environment and
DATABASE_URL (through `Run`, which the release phase provides). The answer is
recorded as a `migrations_pending` event of the deployment, so the check,
backup and migrate steps that follow, even after a crash and a resume, know
whether to run or to be journaled as skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from conveyor.config import command_argv
from conveyor.config.models import MigrateConfig
from conveyor.databases.frameworks import (
    Alembic,
    Django,
    alembic_revisions,
    detect,
    django_plan,
)
from conveyor.errors import MigrationError

# (what, argv, exit codes that are answers) -> (exit code, output); other codes raise.
Run = Callable[[str, list[str], tuple[int, ...]], Awaitable[tuple[int, str]]]
EVENT = "migrations_pending"


@dataclass(frozen=True)
class Pending:
    """What the tool said: anything pending, which migrations (when it names them), how."""

    pending: bool
    migrations: tuple[str, ...]
    how: str


async def ask_pending(run: Run, migrate: MigrateConfig, service: str) -> Pending:
    """Ask the tool of `migrate` (or its `pending` command) whether anything is pending."""
    if migrate.pending is not True and migrate.pending is not False:
        code, _ = await run(f"migrate.pending of {service}", command_argv(migrate.pending), (0, 1))
        return Pending(code == 1, (), "migrate.pending")
    tool = detect(migrate.command)
    if isinstance(tool, Django):
        return await _django(run, tool, service)
    if isinstance(tool, Alembic):
        return await _alembic(run, tool, service)
    raise MigrationError(  # pragma: no cover - the planner plans no step then
        f"cannot tell which migrations of {service} are pending",
        hint="set migrate.pending to a command (exit 0: none pending, 1: some), or to false",
    )


async def _django(run: Run, tool: Django, service: str) -> Pending:
    code, _ = await run(f"manage.py migrate --check of {service}", tool.check_argv(), (0, 1))
    if code == 0:
        return Pending(False, (), "Django's migrate --check")
    names = await django_pending(run, tool, service)
    return Pending(True, tuple(f"{app}.{name}" for app, name in names), "Django's migrate --plan")


async def django_pending(run: Run, tool: Django, service: str) -> list[tuple[str, str]]:
    """(app, migration) of the pending Django migrations, in the order they would run."""
    _, output = await run(f"manage.py migrate --plan of {service}", tool.plan_argv(), (0,))
    return django_plan(output)


async def _alembic(run: Run, tool: Alembic, service: str) -> Pending:
    _, current = await run(f"alembic current of {service}", tool.current_argv(), (0,))
    _, heads = await run(f"alembic heads of {service}", tool.heads_argv(), (0,))
    at, wanted = alembic_revisions(current), alembic_revisions(heads)
    if not wanted:
        raise MigrationError(
            f"alembic heads of {service} printed no revision",
            hint="check the release's Alembic configuration, or set migrate.pending",
        )
    missing = tuple(sorted(wanted - at))
    return Pending(bool(missing) or at != wanted, missing, "Alembic's current against heads")


def answers(events: Sequence[tuple[str, dict[str, object]]]) -> dict[tuple[str, str], bool]:
    """{(service, database): anything pending} from a deployment's events, newest first
    (the newest answer counts: a resumed step may have asked again)."""
    found: dict[tuple[str, str], bool] = {}
    for kind, data in events:
        if kind != EVENT:
            continue
        key = (str(data.get("service")), str(data.get("database")))
        found.setdefault(key, bool(data.get("pending")))
    return found


async def django_sql(run: Run, tool: Django, service: str) -> list[tuple[str, str]]:
    """(app.migration, its SQL) for each pending Django migration, from `sqlmigrate`: what
    the safety check lints when there is no `sql_preview`."""
    parts = []
    for app, name in await django_pending(run, tool, service):
        _, sql = await run(
            f"manage.py sqlmigrate {app} {name} of {service}", tool.sqlmigrate_argv(app, name), (0,)
        )
        parts.append((f"{app}.{name}", sql))
    return parts
