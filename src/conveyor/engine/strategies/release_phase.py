"""The release phase: before any instance of a new release gets traffic, ask what is pending,
check the migration, back up the database, and migrate.

Pure planning, like the strategies: the steps come first in a deploy's plan,
one backup per database even when several services migrate it. Every
`pending_migrations` step comes before the others, so that a backup is
skipped only when none of the migrations of its database has anything pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.engine.plan import BackupDatabase, CheckMigration, Migrate, PendingMigrations, Step


@dataclass(frozen=True)
class Migration:
    """A service whose release changes and that has a `migrate:` block."""

    service: str
    release: str
    previous: str | None  # the release serving now; None on a first deploy
    database: str
    backup_first: bool  # databases.<name>.backup.before_migrate
    ask_pending: bool = False  # the tool can tell what is pending (or migrate.pending says how)


def plan_release_phase(
    migrations: Sequence[Migration], *, warn_only: bool = False, allowed_by: str = ""
) -> list[Step]:
    """Ask what is pending, then check, back up (once per database) and migrate, service by
    service.

    A first deploy has no running release to break, so nothing is checked.

    >>> m = Migration("api", "v2", "v1", "main", True)
    >>> [s.kind for s in plan_release_phase([m, Migration("jobs", "j2", "j1", "main", True)])]
    ['check_migration', 'backup', 'migrate', 'check_migration', 'migrate']
    >>> [s.kind for s in plan_release_phase([Migration("api", "v2", None, "main", True, True)])]
    ['pending_migrations', 'backup', 'migrate']
    """
    steps: list[Step] = [
        PendingMigrations(m.service, release=m.release, database=m.database)
        for m in migrations
        if m.ask_pending
    ]
    backed_up: set[str] = set()
    for m in migrations:
        if m.previous is not None:
            steps.append(
                CheckMigration(
                    m.service,
                    release=m.release,
                    previous=m.previous,
                    database=m.database,
                    warn_only=warn_only,
                    allowed_by=allowed_by,
                )
            )
        if m.backup_first and m.database not in backed_up:
            steps.append(BackupDatabase(m.service, database=m.database))
            backed_up.add(m.database)
        steps.append(Migrate(m.service, release=m.release, database=m.database))
    return steps
