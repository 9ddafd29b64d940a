"""Immediate (all at once): start the whole new set, then switch traffic in one step.

Needs room for twice the instances for a moment; capacity never drops and
old and new releases never serve side by side for longer than the drain.
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


def plan_immediate(goal: ServiceGoal, phase: str = FORWARD) -> list[Step]:
    """Start all new instances, gate on health, switch all traffic, retire the old set."""
    svc = goal.service
    parts = partition(goal)
    steps: list[Step] = []
    if parts.discard:
        steps.append(StopInstances(svc, phase, instances=parts.discard))
    desired = goal.replicas if goal.release is not None else 0
    missing = desired - len(parts.keep)
    new = tuple(goal.new_name(i + 1) for i in range(max(0, missing)))
    if new:
        assert goal.release is not None
        steps.append(StartInstances(svc, phase, release=goal.release, instances=new))
        steps.append(WaitHealthy(svc, phase, instances=new))
    serving = (*parts.keep, *new)
    if new or parts.retire:
        steps.append(SetWeights(svc, phase, weights=tuple((n, 1) for n in serving)))
    if parts.retire:
        steps.append(DrainInstances(svc, phase, instances=parts.retire))
        steps.append(StopInstances(svc, phase, instances=parts.retire))
    steps.append(MarkCurrent(svc, phase, release=goal.release))
    return steps
