"""Table tests of the pure planners, plus a simulation of their capacity invariants."""

from __future__ import annotations

import itertools

import pytest

from conveyor.config.models import StrategyConfig
from conveyor.engine.capacity import resolve_count, rolling_limits
from conveyor.engine.plan import (
    DrainInstances,
    MarkCurrent,
    SetWeights,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.strategies import ObservedInstance, ServiceGoal, plan_service


def serving(*names: str, release: str = "v1") -> tuple[ObservedInstance, ...]:
    return tuple(ObservedInstance(n, release, True) for n in names)


def goal(
    replicas: int, observed: tuple[ObservedInstance, ...], release: str | None = "v2"
) -> ServiceGoal:
    return ServiceGoal("api", release, replicas, observed, name_prefix="new")


def short(steps: list[Step]) -> list[str]:
    out = []
    for s in steps:
        if isinstance(s, SetWeights):
            out.append("weights " + ",".join(n for n, _ in s.weights))
        elif isinstance(s, MarkCurrent):
            out.append(f"current {s.release}")
        else:
            out.append(f"{s.kind} " + ",".join(s.instances))  # type: ignore[attr-defined]
    return out


def test_rolling_two_replicas_default_limits() -> None:
    steps = plan_service("rolling", goal(2, serving("a", "b")))
    assert short(steps) == [
        "start new-1",
        "wait_healthy new-1",
        "weights b,new-1",
        "drain a",
        "stop a",
        "start new-2",
        "wait_healthy new-2",
        "weights new-1,new-2",
        "drain b",
        "stop b",
        "current v2",
    ]


def test_rolling_first_deploy_starts_everything_at_once() -> None:
    steps = plan_service("rolling", goal(3, ()))
    assert short(steps) == [
        "start new-1,new-2,new-3",
        "wait_healthy new-1,new-2,new-3",
        "weights new-1,new-2,new-3",
        "current v2",
    ]


def test_rolling_with_unavailable_stops_first() -> None:
    strategy = StrategyConfig(type="rolling", max_surge="25%", max_unavailable="25%")
    steps = plan_service(strategy, goal(4, serving("a", "b", "c", "d")))
    assert short(steps) == [
        "drain a",
        "stop a",
        "start new-1,new-2",
        "wait_healthy new-1,new-2",
        "weights c,d,new-1,new-2",
        "drain b",
        "stop b",
        "drain c",
        "stop c",
        "start new-3,new-4",
        "wait_healthy new-3,new-4",
        "weights new-1,new-2,new-3,new-4",
        "drain d",
        "stop d",
        "current v2",
    ]


def test_immediate_switches_all_traffic_in_one_step() -> None:
    steps = plan_service("immediate", goal(2, serving("a", "b")))
    assert short(steps) == [
        "start new-1,new-2",
        "wait_healthy new-1,new-2",
        "weights new-1,new-2",
        "drain a,b",
        "stop a,b",
        "current v2",
    ]


def test_instances_without_traffic_are_discarded_first() -> None:
    observed = (*serving("a"), ObservedInstance("half", "v2", False))
    steps = plan_service("rolling", goal(1, observed))
    assert short(steps)[0] == "stop half"


def test_revert_keeps_serving_target_instances() -> None:
    # Abort halfway through v1 -> v2: a (v1) still serves beside new-1 (v2).
    observed = (*serving("a", release="v1"), *serving("n1", release="v2"))
    steps = plan_service("rolling", ServiceGoal("api", "v1", 2, observed, name_prefix="back"))
    assert short(steps) == [
        "start back-1",
        "wait_healthy back-1",
        "weights a,back-1",
        "drain n1",
        "stop n1",
        "current v1",
    ]


def test_goal_without_release_removes_the_service() -> None:
    steps = plan_service("rolling", goal(0, serving("a", "b"), release=None))
    assert short(steps) == ["drain a,b", "stop a,b", "current None"]


def test_nothing_to_do_only_marks_current() -> None:
    steps = plan_service("rolling", goal(2, serving("a", "b", release="v2")))
    assert short(steps) == ["current v2"]


@pytest.mark.parametrize(
    ("value", "replicas", "up", "expected"),
    [
        (1, 3, True, 1),
        ("25%", 3, True, 1),
        ("25%", 3, False, 0),
        ("50%", 5, False, 2),
        ("100%", 4, True, 4),
        ("10%", 10, True, 1),
        ("30%", 10, False, 3),
        (0, 5, True, 0),
    ],
)
def test_resolve_count(value: int | str, replicas: int, up: bool, expected: int) -> None:
    assert resolve_count(value, replicas, round_up=up) == expected


def test_limits_never_allow_zero_serving() -> None:
    assert rolling_limits(0, "100%", 1, 1).unavailable == 0
    assert rolling_limits(0, "100%", 3, 3).unavailable == 2


def simulate(steps: list[Step], observed: tuple[ObservedInstance, ...]) -> list[tuple[int, int]]:
    """Apply steps to a model of the environment; return (running, serving) after each."""
    running = {o.name for o in observed}
    routed = {o.name for o in observed if o.serving}
    history = []
    for step in steps:
        if isinstance(step, StartInstances):
            running |= set(step.instances)
        elif isinstance(step, SetWeights):
            assert set(step.as_mapping()) <= running, "traffic sent to an instance not running"
            routed = set(step.as_mapping())
        elif isinstance(step, DrainInstances):
            routed -= set(step.instances)
        elif isinstance(step, StopInstances):
            assert not set(step.instances) & routed, "stopped an instance that still gets traffic"
            running -= set(step.instances)
        elif isinstance(step, WaitHealthy):
            assert set(step.instances) <= running
        history.append((len(running), len(routed)))
    return history


@pytest.mark.parametrize(
    ("current", "desired", "surge", "unavailable"),
    list(itertools.product([1, 2, 3, 5], [1, 2, 4], [0, 1, 2, "50%"], [0, 1, "25%"])),
)
def test_rolling_invariants(
    current: int, desired: int, surge: int | str, unavailable: int | str
) -> None:
    observed = serving(*(f"old-{i}" for i in range(current)))
    strategy = StrategyConfig(type="rolling", max_surge=surge, max_unavailable=unavailable)
    steps = plan_service(strategy, goal(desired, observed))
    limits = rolling_limits(surge, unavailable, current, desired)
    ceiling = max(current, desired) + limits.surge
    floor = max(1, min(current, desired) - limits.unavailable)
    for running, routed in simulate(steps, observed):
        assert running <= ceiling
        assert routed >= floor
    final = {n for s in steps if isinstance(s, StartInstances) for n in s.instances}
    assert len(final) == desired
    assert isinstance(steps[-1], MarkCurrent)


def test_plan_round_trips_through_json() -> None:
    steps = plan_service("rolling", goal(2, serving("a", "b")))
    assert steps_from_json(steps_to_json(steps)) == steps


def test_recreate_stops_everything_before_starting() -> None:
    steps = plan_service("recreate", goal(2, serving("a", "b")))
    assert short(steps) == [
        "drain a,b",
        "stop a,b",
        "start new-1,new-2",
        "wait_healthy new-1,new-2",
        "weights new-1,new-2",
        "current v2",
    ]
