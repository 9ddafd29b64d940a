"""Where plans run smoke tests: once, on a healthy instance of the new release, before traffic."""

from __future__ import annotations

import pytest

from conveyor.config.models import BlueGreenStrategy, CanaryStrategy, StrategyConfig
from conveyor.engine.plan import (
    REVERT,
    SetWeights,
    SmokeTests,
    StartInstances,
    Step,
    WaitHealthy,
    steps_from_json,
    steps_to_json,
)
from conveyor.engine.strategies import (
    ObservedInstance,
    ServiceGoal,
    plan_flip,
    plan_service,
    with_smoke_tests,
)

TESTS = ({"name": "home", "path": "/", "expect_status": 200, "timeout": "5s"},)


def running(*names: str, release: str = "v1", serving: bool = True) -> tuple[ObservedInstance, ...]:
    state = "serving" if serving else "warm"
    return tuple(ObservedInstance(n, release, serving, state=state) for n in names)


def new_instances(steps: list[Step], release: str) -> set[str]:
    return {
        name
        for s in steps
        if isinstance(s, StartInstances) and s.release == release
        for name in s.instances
    }


STRATEGIES = {
    "rolling": StrategyConfig(type="rolling", max_surge=1),
    "immediate": StrategyConfig(type="immediate"),
    "recreate": StrategyConfig(type="recreate"),
    "blue_green": BlueGreenStrategy(type="blue_green", preview="127.0.0.1:9999"),
    "canary": CanaryStrategy(type="canary", baseline=True, steps=[{"set_weight": 20}]),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("observed", [(), running("a", "b", "c")], ids=["first", "upgrade"])
def test_smoke_tests_run_once_on_a_healthy_new_instance_before_it_gets_traffic(
    name: str, observed: tuple[ObservedInstance, ...]
) -> None:
    goal = ServiceGoal("api", "v2", 3, observed, name_prefix="n")
    steps = plan_service(STRATEGIES[name], goal, smoke=TESTS)
    smoke = [i for i, s in enumerate(steps) if isinstance(s, SmokeTests)]
    assert len(smoke) == 1, steps
    at = smoke[0]
    step = steps[at]
    assert isinstance(step, SmokeTests) and step.tests == TESTS
    assert step.instance in new_instances(steps, "v2")
    healthy = [
        i
        for i, s in enumerate(steps)
        if isinstance(s, WaitHealthy) and step.instance in s.instances
    ]
    assert healthy and healthy[0] < at
    fresh = new_instances(steps, "v2")
    first_traffic = next(
        i
        for i, s in enumerate(steps)
        if isinstance(s, SetWeights) and any(n in fresh and w > 0 for n, w in s.weights)
    )
    assert at < first_traffic
    assert steps_from_json(steps_to_json(steps)) == steps


def test_nothing_to_smoke_test_without_tests_or_without_a_new_instance() -> None:
    goal = ServiceGoal("api", "v2", 2, running("a", "b"), name_prefix="n")
    assert not any(isinstance(s, SmokeTests) for s in plan_service("rolling", goal))
    # A rollback inside the window flips to warm instances: nothing new to test.
    warm = ServiceGoal(
        "api",
        "v1",
        2,
        (*running("a", "b", serving=False), *running("x", "y", release="v2")),
        name_prefix="n",
    )
    flip = with_smoke_tests(plan_flip(warm, keep_warm=60), "v1", TESTS)
    assert not any(isinstance(s, SmokeTests) for s in flip)
    # Restoring the previous release after a failure: it served before, no test.
    revert = plan_service("rolling", goal, phase=REVERT, smoke=TESTS)
    assert not any(isinstance(s, SmokeTests) for s in revert)
    # Stopping a service (no release) tests nothing either.
    down = ServiceGoal("api", None, 0, running("a"), name_prefix="n")
    assert not any(isinstance(s, SmokeTests) for s in plan_service("immediate", down, smoke=TESTS))


def test_a_rollback_that_starts_instances_smoke_tests_them() -> None:
    goal = ServiceGoal("api", "v1", 2, running("x", "y", release="v2"), name_prefix="n")
    steps = with_smoke_tests(plan_flip(goal), "v1", TESTS)
    kinds = [s.kind for s in steps]
    assert kinds[:3] == ["start", "wait_healthy", "smoke"]
