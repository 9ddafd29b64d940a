"""Pure planners: (strategy settings, goal, observed state) -> steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.analysis import AnalysisSpec
from conveyor.config.models import (
    AnalysisTemplate,
    BlueGreenStrategy,
    CanaryStrategy,
    StrategyConfig,
    StrategySpec,
)
from conveyor.engine.plan import FORWARD, Step
from conveyor.engine.strategies.base import (
    BASELINE,
    CANARY,
    STABLE,
    ObservedInstance,
    ServiceGoal,
    partition,
)
from conveyor.engine.strategies.blue_green import BlueGreenPlanSettings, plan_blue_green
from conveyor.engine.strategies.canary import (
    CanaryAction,
    CanaryPlanSettings,
    canary_size,
    plan_canary,
)
from conveyor.engine.strategies.flip import plan_flip
from conveyor.engine.strategies.host_batches import plan_host_batches
from conveyor.engine.strategies.immediate import plan_immediate
from conveyor.engine.strategies.placement import place, with_shipping
from conveyor.engine.strategies.recreate import plan_recreate
from conveyor.engine.strategies.rolling import plan_rolling
from conveyor.engine.strategies.smoke import with_smoke_tests

STRATEGIES = ("immediate", "recreate", "rolling", "blue_green", "canary")
PROGRESSIVE = ("blue_green", "canary")


def plan_service(
    strategy: StrategySpec | str,
    goal: ServiceGoal,
    *,
    analyses: Mapping[str, AnalysisTemplate] | None = None,
    phase: str = FORWARD,
    smoke: Sequence[Mapping[str, Any]] = (),
) -> list[Step]:
    """Dispatch to the planner of `strategy` (a config object, or a type name), then place
    the instances it starts on `goal.hosts` (`placement.place`).

    `smoke` (the service's smoke tests, as dicts) run on the first healthy
    instance of the new release, before it gets traffic (`with_smoke_tests`).
    """
    planned = place(_plan(strategy, goal, analyses, phase), goal)
    return with_smoke_tests(planned, goal.release, smoke)


def _plan(
    strategy: StrategySpec | str,
    goal: ServiceGoal,
    analyses: Mapping[str, AnalysisTemplate] | None,
    phase: str,
) -> list[Step]:
    if isinstance(strategy, str):
        if strategy not in ("immediate", "recreate", "rolling"):
            raise ValueError(f"unknown strategy {strategy!r}")
        strategy = StrategyConfig.model_validate({"type": strategy})
    templates = analyses or {}
    if isinstance(strategy, CanaryStrategy):
        return plan_canary(goal, canary_settings(strategy, templates), phase)
    if isinstance(strategy, BlueGreenStrategy):
        return plan_blue_green(goal, blue_green_settings(strategy, templates), phase)
    if strategy.type == "immediate":
        return plan_immediate(goal, phase)
    if strategy.type == "recreate":
        return plan_recreate(goal, phase)
    if strategy.batch is not None:
        return plan_host_batches(goal, strategy.batch, phase)
    return plan_rolling(goal, strategy.max_surge, strategy.max_unavailable, phase)


def canary_settings(
    strategy: CanaryStrategy, templates: Mapping[str, AnalysisTemplate]
) -> CanaryPlanSettings:
    against = BASELINE if strategy.baseline else STABLE
    names = {s.analysis for s in strategy.steps if s.analysis is not None}
    if strategy.analysis is not None:
        names.add(strategy.analysis)
    return CanaryPlanSettings(
        actions=tuple(CanaryAction(s.kind, getattr(s, s.kind)) for s in strategy.steps),
        baseline=strategy.baseline,
        background=strategy.analysis,
        analyses={name: _journaled(templates[name].spec_dict(against)) for name in sorted(names)},
        rollback_window=strategy.rollback_window,
    )


def blue_green_settings(
    strategy: BlueGreenStrategy, templates: Mapping[str, AnalysisTemplate]
) -> BlueGreenPlanSettings:
    pre = strategy.pre_promotion_analysis
    post = strategy.post_promotion_analysis
    return BlueGreenPlanSettings(
        preview=strategy.preview is not None,
        auto_promote=strategy.auto_promote,
        pre_analysis=None if pre is None else (pre, _journaled(templates[pre].spec_dict(STABLE))),
        post_analysis=None
        if post is None
        else (post, _journaled(templates[post].spec_dict(STABLE, comparative=False))),
        rollback_window=strategy.rollback_window,
    )


def _journaled(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as plans and journals keep it: normalized, secrets redacted."""
    return AnalysisSpec.from_dict(spec).to_dict()


__all__ = [
    "BASELINE",
    "CANARY",
    "PROGRESSIVE",
    "STABLE",
    "STRATEGIES",
    "ObservedInstance",
    "ServiceGoal",
    "canary_size",
    "partition",
    "place",
    "plan_blue_green",
    "plan_canary",
    "plan_flip",
    "plan_host_batches",
    "plan_immediate",
    "plan_recreate",
    "plan_rolling",
    "plan_service",
    "with_shipping",
    "with_smoke_tests",
]
