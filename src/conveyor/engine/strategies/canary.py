"""Canary: move traffic to the new release in steps, judged by analyses.

The router gives each group an exact share whatever its replica count
(`share_weights`): the canary gets `set_weight` percent, a baseline (fresh
instances of the stable release, `baseline: true`) the same share, the
stable instances the rest. The canary grows with its share (ceil(replicas x
share), at least one); after the last step it gets all the replicas and all
the traffic, and the stable instances stay warm for the rollback window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.engine.plan import (
    FORWARD,
    Analyze,
    DrainInstances,
    KeepWarm,
    MarkCurrent,
    Pause,
    SetWeights,
    StartAnalysis,
    StartInstances,
    Step,
    StopAnalysis,
    StopInstances,
    WaitHealthy,
)
from conveyor.engine.strategies.base import ServiceGoal
from conveyor.engine.strategies.immediate import plan_immediate
from conveyor.engine.weights import share_weights


@dataclass(frozen=True)
class CanaryAction:
    """One configured step: ("set_weight", 10), ("pause", 30.0 or None), ("analysis", name)."""

    kind: str
    value: Any


@dataclass(frozen=True)
class CanaryPlanSettings:
    actions: tuple[CanaryAction, ...]
    baseline: bool = False
    background: str | None = None  # background analysis name
    analyses: Mapping[str, dict[str, Any]] | None = None  # name -> AnalysisSpec dict
    rollback_window: float = 0.0


def canary_size(replicas: int, share: int) -> int:
    """Instances the canary needs for `share` percent of the traffic.

    >>> canary_size(4, 10), canary_size(4, 50), canary_size(3, 0), canary_size(1, 100)
    (1, 2, 0, 1)
    """
    return 0 if share <= 0 else max(1, math.ceil(replicas * share / 100))


def plan_canary(
    goal: ServiceGoal, settings: CanaryPlanSettings, phase: str = FORWARD
) -> list[Step]:
    """Steps of a canary rollout of one service; a first deploy has nothing to compare
    with and starts the whole set at once."""
    svc = goal.service
    release = goal.release
    stable = [i for i in goal.observed if i.serving and i.release != release]
    if release is None or not stable:
        return plan_immediate(goal, phase)
    stable_release = _most_common([i.release for i in stable])
    steps: list[Step] = []
    discard = tuple(i.name for i in goal.observed if not i.serving)
    if discard:
        steps.append(StopInstances(svc, phase, instances=discard))
    stable_names = tuple(i.name for i in stable)
    canary: list[str] = [i.name for i in goal.observed if i.serving and i.release == release]
    baseline: list[str] = []
    analyses = settings.analyses or {}

    def grow(names: list[str], size: int, of: str, prefix: str) -> None:
        first = len(names) + 1
        new = tuple(f"{goal.name_prefix}-{prefix}{n}" for n in range(first, size + 1))
        if new:
            steps.append(StartInstances(svc, phase, release=of, instances=new))
            steps.append(WaitHealthy(svc, phase, instances=new))
            names.extend(new)

    def analyze(cls: type[Analyze], name: str) -> Analyze:
        return cls(
            svc, phase, name=name, spec=dict(analyses[name]), canary=release, stable=stable_release
        )

    background_started = False
    for action in settings.actions:
        if action.kind == "set_weight":
            share = int(action.value)
            size = canary_size(goal.replicas, share)
            grow(canary, size, release, "")
            if settings.baseline:
                grow(baseline, size, stable_release, "b")
            other = share if settings.baseline else 0
            groups = [(share, tuple(canary)), (other, tuple(baseline))]
            groups.append((100 - share - other, stable_names))
            steps.append(SetWeights(svc, phase, weights=share_weights(groups)))
            if settings.background and not background_started and share > 0:
                steps.append(analyze(StartAnalysis, settings.background))
                background_started = True
        elif action.kind == "pause":
            steps.append(Pause(svc, phase, seconds=action.value))
        elif action.kind == "analysis":
            steps.append(analyze(Analyze, str(action.value)))
        else:  # pragma: no cover - config validation allows only these
            raise ValueError(f"unknown canary step {action.kind!r}")
    if background_started and settings.background:
        steps.append(StopAnalysis(svc, phase, name=settings.background))
    grow(canary, goal.replicas, release, "")
    groups = [(100, tuple(canary)), (0, tuple(baseline)), (0, stable_names)]
    steps.append(SetWeights(svc, phase, weights=share_weights(groups)))
    steps.append(MarkCurrent(svc, phase, release=release))
    if baseline:
        steps.append(DrainInstances(svc, phase, instances=tuple(baseline)))
        steps.append(StopInstances(svc, phase, instances=tuple(baseline)))
    steps.extend(retire_or_keep_warm(svc, stable_names, settings.rollback_window, phase))
    return steps


def retire_or_keep_warm(
    service: str, names: tuple[str, ...], window: float, phase: str
) -> list[Step]:
    """The previous release's instances after a promotion: warm for `window`, or stopped."""
    if not names:
        return []
    if window > 0:
        return [KeepWarm(service, phase, instances=names, seconds=window)]
    return [
        DrainInstances(service, phase, instances=names),
        StopInstances(service, phase, instances=names),
    ]


def _most_common(values: list[str]) -> str:
    return max(sorted(set(values)), key=values.count)
