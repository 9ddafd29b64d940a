"""Step handlers: one per step type, looked up by the executor (`handler_for`).

A new step type is a `Step` in `engine/plan.py` plus a handler registered in
`HANDLERS` below; a test checks that every step type has one.
"""

from __future__ import annotations

from typing import Any

from conveyor.engine.handlers.accessories import StartAccessoryHandler
from conveyor.engine.handlers.base import StepContext, StepHandler
from conveyor.engine.handlers.control import (
    AnalyzeHandler,
    AwaitApprovalHandler,
    HookHandler,
    KeepWarmHandler,
    MarkCurrentHandler,
    PauseHandler,
    ShipHandler,
    StartAnalysisHandler,
    StopAnalysisHandler,
    VerifyReleaseHandler,
)
from conveyor.engine.handlers.instances import (
    DrainHandler,
    PreviewHandler,
    SetWeightsHandler,
    SmokeTestsHandler,
    StartHandler,
    StopHandler,
    WaitHealthyHandler,
)
from conveyor.engine.handlers.release_phase import (
    BackupDatabaseHandler,
    CheckMigrationHandler,
    MigrateHandler,
    PendingMigrationsHandler,
    RestoreDatabaseHandler,
)
from conveyor.engine.handlers.verify import VerifyHandler
from conveyor.engine.plan import Step

HANDLERS: dict[str, StepHandler[Any]] = {
    h.step_type.kind: h
    for h in (
        VerifyReleaseHandler(),
        ShipHandler(),
        AwaitApprovalHandler(),
        HookHandler(),
        PendingMigrationsHandler(),
        CheckMigrationHandler(),
        BackupDatabaseHandler(),
        MigrateHandler(),
        RestoreDatabaseHandler(),
        StartAccessoryHandler(),
        StartHandler(),
        WaitHealthyHandler(),
        SmokeTestsHandler(),
        SetWeightsHandler(),
        DrainHandler(),
        StopHandler(),
        MarkCurrentHandler(),
        PauseHandler(),
        AnalyzeHandler(),
        StartAnalysisHandler(),
        StopAnalysisHandler(),
        KeepWarmHandler(),
        PreviewHandler(),
        VerifyHandler(),
    )
}


def handler_for(step: Step) -> StepHandler[Any]:
    """The handler of `step`'s type."""
    try:
        return HANDLERS[step.kind]
    except KeyError:  # pragma: no cover - a test checks every step type has one
        raise TypeError(f"no handler for step type {step.kind!r}") from None


__all__ = ["HANDLERS", "StepContext", "StepHandler", "handler_for"]
