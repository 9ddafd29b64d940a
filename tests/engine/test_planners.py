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
    ShipRelease,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
    refuses,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.strategies import ObservedInstance, ServiceGoal, plan_service, with_shipping
from conveyor.engine.strategies.release_phase import Migration, plan_release_phase


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


# -- placement over several hosts -------------------------------------------------------

HOSTS = ("h1", "h2", "h3")


def on_hosts(*pairs: tuple[str, str], release: str = "v1") -> tuple[ObservedInstance, ...]:
    return tuple(ObservedInstance(n, release, True, host=h) for n, h in pairs)


def fleet_goal(replicas: int, observed: tuple[ObservedInstance, ...]) -> ServiceGoal:
    return ServiceGoal("api", "v2", replicas, observed, name_prefix="new", hosts=HOSTS)


def placed(steps: list[Step], known: tuple[str, ...] = HOSTS) -> list[tuple[str, str]]:
    return [pair for s in steps if isinstance(s, StartInstances) for pair in s.placed(known)]


def fleet_after(steps: list[Step], observed: tuple[ObservedInstance, ...]) -> dict[str, list[str]]:
    """Which instances run on each host once the plan ran."""
    running = {i.name: i.host for i in observed}
    for step in steps:
        if isinstance(step, StartInstances):
            running.update(step.placed(HOSTS))
        elif isinstance(step, StopInstances):
            for name in step.instances:
                running.pop(name, None)
    return {h: sorted(n for n, on in running.items() if on == h) for h in HOSTS}


def serving_counts(steps: list[Step], observed: tuple[ObservedInstance, ...]) -> list[int]:
    """How many instances serve, across every host, after each step."""
    serving = {i.name for i in observed if i.serving}
    counts = []
    for step in steps:
        if isinstance(step, SetWeights):
            serving = {n for n, w in step.weights if w > 0}
        elif isinstance(step, DrainInstances | StopInstances):
            serving -= set(step.instances)
        counts.append(len(serving))
    return counts


@pytest.mark.parametrize(
    ("strategy", "replicas", "observed", "expected"),
    [
        # A first deploy spreads the replicas, one per host, then round again.
        ("rolling", 3, (), {"h1": ["new-1"], "h2": ["new-2"], "h3": ["new-3"]}),
        ("immediate", 5, (), {"h1": ["new-1", "new-4"], "h2": ["new-2", "new-5"], "h3": ["new-3"]}),
        # Replacing every old instance: the new ones are spread as on a first deploy.
        (
            "rolling",
            3,
            on_hosts(("a", "h1"), ("b", "h2"), ("c", "h3")),
            {"h1": ["new-1"], "h2": ["new-2"], "h3": ["new-3"]},
        ),
        (
            "recreate",
            2,
            on_hosts(("a", "h1"), ("b", "h1")),
            {"h1": ["new-1"], "h2": ["new-2"], "h3": []},
        ),
        # Kept instances count: h2 carries one that stays, so the new ones go to h1 and h3.
        (
            "rolling",
            3,
            on_hosts(("a", "h2"), release="v2"),
            {"h1": ["new-1"], "h2": ["a"], "h3": ["new-2"]},
        ),
    ],
)  # fmt: skip
def test_instances_are_spread_over_the_hosts(
    strategy: str,
    replicas: int,
    observed: tuple[ObservedInstance, ...],
    expected: dict[str, list[str]],
) -> None:
    steps = plan_service(strategy, fleet_goal(replicas, observed))
    assert fleet_after(steps, observed) == expected


@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("surge", [1, 2, "50%"])
def test_no_rolling_batch_takes_the_last_serving_instance_across_the_fleet(
    replicas: int, surge: int | str
) -> None:
    old = on_hosts(*((f"old-{i}", HOSTS[i % 3]) for i in range(replicas)))
    strategy = StrategyConfig(type="rolling", max_surge=surge, max_unavailable=1)
    steps = plan_service(strategy, fleet_goal(replicas, old))
    assert min(serving_counts(steps, old)) >= 1
    sizes = [len(names) for names in fleet_after(steps, old).values()]
    assert max(sizes) - min(sizes) <= 1  # as even as the replicas allow
    assert all(host in HOSTS for _, host in placed(steps))


def test_one_host_places_everything_on_it() -> None:
    steps = plan_service("rolling", goal(2, serving("a", "b")))
    assert {host for _, host in placed(steps, ("local",))} == {"local"}


def test_ship_steps_come_first_once_per_release_and_host_only_when_the_target_ships() -> None:
    steps = plan_service("rolling", fleet_goal(4, ()))
    assert with_shipping(steps, ships=False) == steps  # the local target: nothing to ship
    shipped = with_shipping(steps, ships=True)
    ships = [s for s in shipped if isinstance(s, ShipRelease)]
    assert [(s.release, s.host) for s in ships] == [("v2", "h1"), ("v2", "h2"), ("v2", "h3")]
    assert shipped[: len(ships)] == ships and shipped[len(ships) :] == steps
    assert ships[0].describe() == "ship v2 to h1 and check its digest there"
    # A ship that fails refuses the deployment: nothing changed before it.
    assert refuses(shipped, 2)


def test_the_release_phase_host_gets_the_release_before_the_migration_runs() -> None:
    migration = plan_release_phase([Migration("api", "v2", "v1", "main", False)])
    steps = [*migration, *plan_service("rolling", fleet_goal(1, ()))]
    shipped = with_shipping(steps, ships=True, run_hosts={"api": "h2"})
    ships = [(s.release, s.host) for s in shipped if isinstance(s, ShipRelease)]
    # The one instance lands on h1; the migration runs on h2, which needs v2 too.
    assert sorted(ships) == [("v2", "h1"), ("v2", "h2")]
    first_migration = next(i for i, s in enumerate(shipped) if s.kind == "check_migration")
    assert all(isinstance(s, ShipRelease) for s in shipped[:first_migration])


# -- rolling in host batches ---------------------------------------------------------------


def batched(batch: int | str) -> StrategyConfig:
    return StrategyConfig(type="rolling", batch=batch)


def test_a_host_batch_replaces_its_hosts_instances_together() -> None:
    old = on_hosts(("a", "h1"), ("b", "h1"), ("c", "h2"), ("d", "h2"), ("e", "h3"), ("f", "h3"))
    steps = plan_service(batched(1), fleet_goal(6, old))
    assert short(steps) == [
        "start new-1,new-2",
        "wait_healthy new-1,new-2",
        "weights c,d,e,f,new-1,new-2",
        "drain a,b",
        "stop a,b",
        "start new-3,new-4",
        "wait_healthy new-3,new-4",
        "weights e,f,new-1,new-2,new-3,new-4",
        "drain c,d",
        "stop c,d",
        "start new-5,new-6",
        "wait_healthy new-5,new-6",
        "weights new-1,new-2,new-3,new-4,new-5,new-6",
        "drain e,f",
        "stop e,f",
        "current v2",
    ]
    assert placed(steps) == [
        ("new-1", "h1"), ("new-2", "h1"), ("new-3", "h2"), ("new-4", "h2"),
        ("new-5", "h3"), ("new-6", "h3"),
    ]  # fmt: skip


def test_a_share_of_the_hosts_rounds_up_to_whole_hosts() -> None:
    old = on_hosts(("a", "h1"), ("b", "h2"), ("c", "h3"))
    steps = plan_service(batched("50%"), fleet_goal(3, old))  # 1.5 hosts: 2 a batch
    starts = [s.hosts for s in steps if isinstance(s, StartInstances)]
    assert starts == [("h1", "h2"), ("h3",)]
    assert plan_service(batched("100%"), fleet_goal(3, old))[0].kind == "start"
    assert [s.hosts for s in plan_service(batched(5), fleet_goal(3, old)) if s.kind == "start"] == [
        ("h1", "h2", "h3")
    ]


def test_a_batch_never_takes_the_last_serving_instance_away() -> None:
    # Two replicas over three hosts: h3 gets no new instance. Its batch comes first (it
    # is listed first), and its old instance is the only one serving: it stays until the
    # next batch's new instance serves.
    old = on_hosts(("a", "h3"))
    goal_ = ServiceGoal("api", "v2", 2, old, name_prefix="new", hosts=("h3", "h1", "h2"))
    steps = plan_service(batched(1), goal_)
    assert short(steps) == [
        "start new-1",
        "wait_healthy new-1",
        "weights new-1",
        "drain a",
        "stop a",
        "start new-2",
        "wait_healthy new-2",
        "weights new-1,new-2",
        "current v2",
    ]
    assert min(serving_counts(steps, old)) == 1
    # Old instances on hosts that no longer carry the service go in a last batch.
    gone = on_hosts(("x", "h9"), ("y", "h9"))
    steps = plan_service(batched(1), fleet_goal(2, gone))
    assert min(serving_counts(steps, gone)) >= 2
    assert fleet_after(steps, gone) == {"h1": ["new-1"], "h2": ["new-2"], "h3": []}
    assert short(steps)[-3:] == ["drain x,y", "stop x,y", "current v2"]


def test_old_instances_unevenly_spread_stop_as_new_ones_make_room() -> None:
    old = on_hosts(*((f"old-{i}", "h1") for i in range(3)))
    steps = plan_service(batched(1), fleet_goal(3, old))
    # h1's batch starts one new instance, so only one of its three old ones can stop.
    assert short(steps)[:5] == ["start new-1", "wait_healthy new-1", "weights old-1,old-2,new-1",
                                "drain old-0", "stop old-0"]  # fmt: skip
    assert min(serving_counts(steps, old)) == 3


@pytest.mark.parametrize("batch", [1, 2, "34%", "100%"])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("layout", ["spread", "one-host", "kept", "moved"])
def test_host_batches_keep_serving_and_spread_evenly(
    batch: int | str, replicas: int, layout: str
) -> None:
    if layout == "spread":
        old = on_hosts(*((f"old-{i}", HOSTS[i % 3]) for i in range(replicas)))
    elif layout == "one-host":
        old = on_hosts(*((f"old-{i}", "h2") for i in range(replicas)))
    elif layout == "kept":
        old = (*on_hosts(("a", "h1"), ("b", "h3")), *on_hosts(("k", "h3"), release="v2"))
    else:
        old = on_hosts(("a", "h9"), ("b", "h1"))
    steps = plan_service(batched(batch), fleet_goal(replicas, old))
    history = simulate(steps, old)
    # Never below what served before (or the replicas, if fewer); never none.
    assert min(routed for _, routed in history) >= max(1, min(len(old), replicas))
    after = fleet_after(steps, old)
    assert sum(len(names) for names in after.values()) == replicas
    sizes = [len(names) for names in after.values()]
    assert max(sizes) - min(sizes) <= 1
    assert all(host in HOSTS for _, host in placed(steps))
    assert isinstance(steps[-1], MarkCurrent)
    assert steps_from_json(steps_to_json(steps)) == steps
    # Capacity never drops: each batch starts before anything of it stops.
    assert min(running for running, _ in history) >= min(len(old), replicas)


def test_removing_a_service_in_batches_stops_it() -> None:
    old = on_hosts(("a", "h1"), ("b", "h2"))
    goal_ = ServiceGoal("api", None, 0, old, name_prefix="new", hosts=HOSTS)
    assert short(plan_service(batched(1), goal_)) == ["drain a,b", "stop a,b", "current None"]
