"""The release phase's plan: every `pending_migrations` step comes first, so that a backup
is skipped only when no migration of its database has anything pending."""

from __future__ import annotations

from conveyor.engine.plan import PendingMigrations, step_from_dict
from conveyor.engine.strategies.release_phase import Migration, plan_release_phase


def kinds(migrations: list[Migration]) -> list[str]:
    return [f"{s.kind} {s.service}" for s in plan_release_phase(migrations)]


def test_the_pending_steps_come_before_any_check_backup_or_migration() -> None:
    api = Migration("api", "a2", "a1", "main", backup_first=True, ask_pending=True)
    jobs = Migration("jobs", "j2", "j1", "main", backup_first=True, ask_pending=True)
    assert kinds([api, jobs]) == [
        "pending_migrations api",
        "pending_migrations jobs",
        "check_migration api",
        "backup api",
        "migrate api",
        "check_migration jobs",
        "migrate jobs",
    ]


def test_a_migration_whose_tool_cannot_tell_is_not_asked() -> None:
    known = Migration("api", "a2", None, "main", backup_first=True, ask_pending=True)
    unknown = Migration("jobs", "j2", None, "jobs", backup_first=False, ask_pending=False)
    assert kinds([known, unknown]) == [
        "pending_migrations api",
        "backup api",
        "migrate api",
        "migrate jobs",
    ]


def test_the_pending_step_survives_the_journal() -> None:
    step = PendingMigrations("api", release="a2", database="main")
    assert step_from_dict(step.to_dict()) == step
    assert step.describe() == "ask which migrations of a2 are pending on database main"
