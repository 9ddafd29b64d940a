"""Blue-green: start the whole new set beside the old one, then switch all traffic at once.

The new (green) set is health-gated, optionally exposed on the preview
address and judged by a pre-promotion analysis, optionally held until
`conveyor promote`, then gets all the traffic in one weight change. A
post-promotion analysis may follow; the old (blue) set stays warm for the
rollback window, so a failure or a rollback is one weight change back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.engine.plan import (
    FORWARD,
    Analyze,
    MarkCurrent,
    Pause,
    Preview,
    SetWeights,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
)
from conveyor.engine.strategies.base import ServiceGoal
from conveyor.engine.strategies.canary import retire_or_keep_warm
from conveyor.engine.strategies.immediate import plan_immediate


@dataclass(frozen=True)
class BlueGreenPlanSettings:
    preview: bool = False
    auto_promote: bool = True
    pre_analysis: tuple[str, Mapping[str, Any]] | None = None  # (name, AnalysisSpec dict)
    post_analysis: tuple[str, Mapping[str, Any]] | None = None
    rollback_window: float = 0.0


def plan_blue_green(
    goal: ServiceGoal, settings: BlueGreenPlanSettings, phase: str = FORWARD
) -> list[Step]:
    """Steps of a blue-green deploy of one service (a first deploy: all at once)."""
    svc = goal.service
    release = goal.release
    blue = [i for i in goal.observed if i.serving and i.release != release]
    if release is None or not blue:
        return plan_immediate(goal, phase)
    blue_release = blue[0].release
    blue_names = tuple(i.name for i in blue)
    steps: list[Step] = []
    discard = tuple(i.name for i in goal.observed if not i.serving)
    if discard:
        steps.append(StopInstances(svc, phase, instances=discard))
    kept = tuple(i.name for i in goal.observed if i.serving and i.release == release)
    green = kept + tuple(goal.new_name(n + 1) for n in range(goal.replicas - len(kept)))
    started = green[len(kept) :]
    if started:
        steps.append(StartInstances(svc, phase, release=release, instances=started))
        steps.append(WaitHealthy(svc, phase, instances=started))
    if settings.preview:
        steps.append(Preview(svc, phase, instances=green))
    if settings.pre_analysis is not None:
        name, spec = settings.pre_analysis
        steps.append(
            Analyze(
                svc,
                phase,
                name=name,
                spec=dict(spec),
                canary=release,
                stable=blue_release,
                preview=settings.preview,
            )
        )
    if not settings.auto_promote:
        steps.append(Pause(svc, phase, seconds=None, reason="switch when promoted"))
    weights = tuple((n, 1) for n in green) + tuple((n, 0) for n in blue_names)
    steps.append(SetWeights(svc, phase, weights=weights))
    steps.append(MarkCurrent(svc, phase, release=release))
    if settings.preview:
        steps.append(Preview(svc, phase, instances=()))
    if settings.post_analysis is not None:
        name, spec = settings.post_analysis
        steps.append(
            Analyze(svc, phase, name=name, spec=dict(spec), canary=release, stable=blue_release)
        )
    steps.extend(retire_or_keep_warm(svc, blue_names, settings.rollback_window, phase))
    return steps
