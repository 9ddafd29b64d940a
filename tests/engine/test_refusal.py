"""Which failed steps refuse a deployment (status `refused`) rather than roll it back."""

from __future__ import annotations

from conveyor.engine.plan import (
    AwaitApproval,
    BackupDatabase,
    CheckMigration,
    Migrate,
    RunHook,
    StartInstances,
    VerifyRelease,
    refuses,
)

PLAN = (
    VerifyRelease("api", release="r2"),  # 1
    AwaitApproval("api"),  # 2
    RunHook("api"),  # 3
    CheckMigration("api", release="r2", previous="r1", database="main"),  # 4
    BackupDatabase("api", database="main"),  # 5
    Migrate("api", release="r2", database="main"),  # 6
    StartInstances("api", release="r2", instances=("api-1",)),  # 7
    RunHook("api"),  # 8: a gate, but after a change
)


def test_a_gate_failing_before_any_change_refuses() -> None:
    assert refuses(PLAN, 1)  # a release modified on disk
    assert refuses(PLAN, 3) and refuses(PLAN, 4)


def test_other_failures_and_gates_after_a_change_do_not() -> None:
    assert [i for i in range(1, len(PLAN) + 1) if refuses(PLAN, i)] == [1, 3, 4]
    assert not refuses(PLAN, 0) and not refuses(PLAN, 99)  # outside the plan (a revert step)
