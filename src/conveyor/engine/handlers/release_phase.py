"""Handlers of the release-phase steps: they run `engine.release_phase.ReleasePhase`."""

from __future__ import annotations

from typing import TypeVar

from conveyor.engine.handlers.base import StepContext, StepHandler
from conveyor.engine.plan import (
    BackupDatabase,
    CheckMigration,
    Migrate,
    PendingMigrations,
    RestoreDatabase,
)
from conveyor.engine.release_phase import ReleasePhase

R = TypeVar(
    "R", bound=PendingMigrations | CheckMigration | BackupDatabase | Migrate | RestoreDatabase
)


def _phase(ctx: StepContext) -> ReleasePhase:
    return ReleasePhase(ctx.rt, ctx.environment, ctx.deployment_id, ctx.progress)


class _ReleasePhaseHandler(StepHandler[R]):
    skips_without_pending = False  # skipped when the release has no pending migration

    def skip_reason(self, ctx: StepContext, step: R) -> str | None:
        return _phase(ctx).skip_reason(step) if self.skips_without_pending else None

    async def run(self, ctx: StepContext, step: R, index: int) -> str | None:
        return await _phase(ctx).execute(step)


class PendingMigrationsHandler(_ReleasePhaseHandler[PendingMigrations]):
    step_type = PendingMigrations


class CheckMigrationHandler(_ReleasePhaseHandler[CheckMigration]):
    step_type = CheckMigration
    skips_without_pending = True


class BackupDatabaseHandler(_ReleasePhaseHandler[BackupDatabase]):
    step_type = BackupDatabase
    interruptible = True
    skips_without_pending = True


class MigrateHandler(_ReleasePhaseHandler[Migrate]):
    step_type = Migrate
    # Not interruptible: stopping a migration half-way helps nobody (abort acts after it).
    skips_without_pending = True


class RestoreDatabaseHandler(_ReleasePhaseHandler[RestoreDatabase]):
    step_type = RestoreDatabase
