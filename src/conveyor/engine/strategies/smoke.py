"""Where a plan runs its smoke tests: on the first healthy instance of the new release,
before any instance of it gets traffic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.engine.plan import FORWARD, SmokeTests, StartInstances, Step, WaitHealthy


def with_smoke_tests(
    steps: Sequence[Step], release: str | None, tests: Sequence[Mapping[str, Any]]
) -> list[Step]:
    """`steps` with one `SmokeTests` step after the first `WaitHealthy` of `release`.

    Nothing changes when there are no tests, when the plan starts no instance
    of `release` (a weight flip to warm instances, a stop), or in the revert
    phase (the release being restored served before). The tests run before
    the first `SetWeights` that would give the new instances traffic, which
    every planner puts after their `WaitHealthy`.

    >>> from conveyor.engine.plan import SetWeights
    >>> plan = [StartInstances("api", release="v2", instances=("n1",)),
    ...         WaitHealthy("api", instances=("n1",)), SetWeights("api", weights=(("n1", 1),))]
    >>> [s.kind for s in with_smoke_tests(plan, "v2", [{"path": "/"}])]
    ['start', 'wait_healthy', 'smoke', 'set_weights']
    """
    if not tests or release is None:
        return list(steps)
    started: set[str] = set()
    for index, step in enumerate(steps):
        if step.phase != FORWARD:
            continue
        if isinstance(step, StartInstances) and step.release == release:
            started.update(step.instances)
        elif isinstance(step, WaitHealthy) and started.intersection(step.instances):
            instance = next(n for n in step.instances if n in started)
            smoke = SmokeTests(
                step.service, step.phase, instance=instance, tests=tuple(dict(t) for t in tests)
            )
            return [*steps[: index + 1], smoke, *steps[index + 1 :]]
    return list(steps)
