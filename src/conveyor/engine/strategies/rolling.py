"""Rolling update: replace instances in batches, health-gated.

Capacity rules: never more than `max(current, desired) + surge` instances,
never fewer than `min(current, desired) - unavailable` serving ones, and never
zero serving instances while the old release still has one.
"""

from __future__ import annotations

from conveyor.engine.capacity import rolling_limits
from conveyor.engine.plan import (
    FORWARD,
    DrainInstances,
    MarkCurrent,
    SetWeights,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
)
from conveyor.engine.strategies.base import ServiceGoal, partition


def plan_rolling(
    goal: ServiceGoal,
    max_surge: int | str = 1,
    max_unavailable: int | str = 0,
    phase: str = FORWARD,
) -> list[Step]:
    """Steps that move one service to `goal` in rolling batches.

    Two replicas, surge 1, unavailable 0 (the default) gives, per batch:
    start one new instance, wait until healthy, route traffic to it instead
    of one old instance (one atomic weight change), drain that old instance,
    stop it.
    """
    svc = goal.service
    parts = partition(goal)
    steps: list[Step] = []
    if parts.discard:
        steps.append(StopInstances(svc, phase, instances=parts.discard))

    desired = goal.replicas if goal.release is not None else 0
    serving_new = list(parts.keep)
    serving_old = list(parts.retire)
    limits = rolling_limits(
        max_surge, max_unavailable, len(serving_new) + len(serving_old), desired
    )
    ceiling = max(len(serving_new) + len(serving_old), desired) + limits.surge
    floor = max(1, min(len(serving_new) + len(serving_old), desired) - limits.unavailable)
    counter = 0

    def weights(leaving: int) -> SetWeights:
        # One atomic change moves traffic onto the new batch and off the old
        # instances about to be drained.
        routed = serving_old[leaving:] + serving_new
        return SetWeights(svc, phase, weights=tuple((n, 1) for n in routed))

    def retire(count: int) -> None:
        nonlocal serving_old
        leaving, serving_old = tuple(serving_old[:count]), serving_old[count:]
        if leaving:
            steps.append(DrainInstances(svc, phase, instances=leaving))
            steps.append(StopInstances(svc, phase, instances=leaving))

    while len(serving_new) < desired:
        serving = len(serving_new) + len(serving_old)
        stop_first = min(limits.unavailable, len(serving_old), max(0, serving - floor))
        if stop_first and serving - stop_first >= 1:
            retire(stop_first)
        total = len(serving_new) + len(serving_old)
        batch = min(desired - len(serving_new), ceiling - total)
        if batch <= 0:
            # More old instances than the ceiling allows (scale down): make room.
            retire(1)
            continue
        names = tuple(goal.new_name(counter + i + 1) for i in range(batch))
        counter += batch
        assert goal.release is not None
        steps.append(StartInstances(svc, phase, release=goal.release, instances=names))
        steps.append(WaitHealthy(svc, phase, instances=names))
        serving_new.extend(names)
        surplus = len(serving_new) + len(serving_old) - max(desired, floor)
        leaving = max(0, min(surplus, len(serving_old)))
        steps.append(weights(leaving))
        retire(leaving)

    # Scale-down surplus, or every old instance when the service goes away.
    retire(len(serving_old))
    steps.append(MarkCurrent(svc, phase, release=goal.release))
    return steps
