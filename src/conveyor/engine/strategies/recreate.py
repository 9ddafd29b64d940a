"""Recreate: stop the old set, then start the new one. Causes downtime.

For services that must never run twice at once (a singleton worker), and
as the naive baseline the zero-downtime benchmark measures against.
"""

from __future__ import annotations

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


def plan_recreate(goal: ServiceGoal, phase: str = FORWARD) -> list[Step]:
    """Drain and stop every old instance, then start, health-gate and route the new set."""
    svc = goal.service
    parts = partition(goal)
    steps: list[Step] = []
    old = parts.discard + parts.retire
    if parts.retire:
        steps.append(DrainInstances(svc, phase, instances=parts.retire))
    if old:
        steps.append(StopInstances(svc, phase, instances=old))
    desired = goal.replicas if goal.release is not None else 0
    new = tuple(goal.new_name(i + 1) for i in range(max(0, desired - len(parts.keep))))
    if new:
        assert goal.release is not None
        steps.append(StartInstances(svc, phase, release=goal.release, instances=new))
        steps.append(WaitHealthy(svc, phase, instances=new))
        steps.append(SetWeights(svc, phase, weights=tuple((n, 1) for n in (*parts.keep, *new))))
    steps.append(MarkCurrent(svc, phase, release=goal.release))
    return steps
