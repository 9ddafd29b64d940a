"""Where a deploy's plan starts the missing accessories: after the checks that change
nothing, before migrations and instances (pure)."""

from __future__ import annotations

from conveyor.engine.deployments import with_accessories
from conveyor.engine.plan import (
    AwaitApproval,
    BackupDatabase,
    CheckMigration,
    Migrate,
    PendingMigrations,
    RunHook,
    ShipRelease,
    StartAccessory,
    StartInstances,
    VerifyRelease,
    refuses,
    step_from_dict,
)


def test_after_the_checks_before_anything_that_changes() -> None:
    steps = [
        VerifyRelease("web", release="r2"),
        AwaitApproval("web"),
        RunHook("web"),
        ShipRelease("web", release="r2", host="host1"),
        PendingMigrations("web", release="r2", database="main"),
        CheckMigration("web", release="r2", previous="r1", database="main"),
        BackupDatabase("web", database="main"),
        Migrate("web", release="r2", database="main"),
        StartInstances("web", release="r2", instances=("web-1",)),
    ]
    redis = StartAccessory("redis", host="host2")
    planned = with_accessories(list(steps), [redis])
    assert planned.index(redis) == 6
    assert planned[5].kind == "check_migration" and planned[7].kind == "backup"
    # A failing check still refuses the deployment: nothing changed before it.
    assert refuses(planned, 6)


def test_alone_and_first() -> None:
    redis = StartAccessory("redis")
    assert with_accessories([], [redis]) == [redis]
    start = StartInstances("web", release="r2", instances=("web-1",))
    assert with_accessories([start], [redis]) == [redis, start]


def test_journaled_and_described() -> None:
    step = StartAccessory("redis", host="host2")
    assert step_from_dict(step.to_dict()) == step
    assert step.describe() == "start accessory redis on host2 (not running)"
    assert StartAccessory("redis", host="local").describe() == "start accessory redis (not running)"
