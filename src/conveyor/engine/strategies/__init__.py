"""Pure planners: (strategy settings, goal, observed state) -> steps."""

from __future__ import annotations

from conveyor.engine.plan import FORWARD, Step
from conveyor.engine.strategies.base import ObservedInstance, ServiceGoal, partition
from conveyor.engine.strategies.immediate import plan_immediate
from conveyor.engine.strategies.recreate import plan_recreate
from conveyor.engine.strategies.rolling import plan_rolling

STRATEGIES = ("immediate", "recreate", "rolling")


def plan_service(
    strategy: str,
    goal: ServiceGoal,
    *,
    max_surge: int | str = 1,
    max_unavailable: int | str = 0,
    phase: str = FORWARD,
) -> list[Step]:
    """Dispatch to the planner of `strategy`."""
    if strategy == "immediate":
        return plan_immediate(goal, phase)
    if strategy == "recreate":
        return plan_recreate(goal, phase)
    if strategy == "rolling":
        return plan_rolling(goal, max_surge, max_unavailable, phase)
    raise ValueError(f"unknown strategy {strategy!r}")


__all__ = [
    "STRATEGIES",
    "ObservedInstance",
    "ServiceGoal",
    "partition",
    "plan_immediate",
    "plan_recreate",
    "plan_rolling",
    "plan_service",
]
