"""Flip: send all traffic back to instances of a release that still run (abort, rollback).

Used to restore the stable release when a canary or blue-green deploy is
aborted, and by `conveyor rollback` inside the rollback window, when the
previous release's instances are still warm. The flip is one weight change;
instances only start when fewer than `replicas` of the release still run.
"""

from __future__ import annotations

from conveyor.engine.plan import (
    FORWARD,
    DrainInstances,
    KeepWarm,
    MarkCurrent,
    Pause,
    SetWeights,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
)
from conveyor.engine.strategies.base import BASELINE, ObservedInstance, ServiceGoal


def _preference(instance: ObservedInstance) -> tuple[int, int]:
    # Serving first (no check needed), then warm ones; baselines last: they
    # were started for the canary and go away with it.
    return (0 if instance.serving else 1, 1 if instance.role == BASELINE else 0)


def plan_flip(
    goal: ServiceGoal,
    *,
    keep_warm: float = 0.0,
    scale_down_delay: float = 0.0,
    phase: str = FORWARD,
) -> list[Step]:
    """Route all traffic to `goal.replicas` running instances of `goal.release`.

    Running instances that do not serve now get one health check first (one
    pass, not `healthy_threshold`: they were healthy and kept running). Missing
    ones are started and health-gated as usual. The instances that lose their traffic are kept
    warm for `keep_warm` seconds when they run another release (a rollback
    can flip back to them), the others are stopped (after `scale_down_delay`,
    drained first).
    """
    svc = goal.service
    steps: list[Step] = []
    release = goal.release
    desired = goal.replicas if release is not None else 0
    candidates = sorted(
        (i for i in goal.observed if i.release == release and i.running), key=_preference
    )
    taken = candidates[:desired]
    taken_names = {i.name for i in taken}
    others = [i for i in goal.observed if i.name not in taken_names]
    dead = tuple(i.name for i in others if not i.running)
    if dead:
        steps.append(StopInstances(svc, phase, instances=dead))
    others = [i for i in others if i.running]
    new = tuple(goal.new_name(n + 1) for n in range(desired - len(taken)))
    if new:
        assert release is not None
        steps.append(StartInstances(svc, phase, release=release, instances=new))
    reused = tuple(i.name for i in taken if not i.serving)
    if reused:
        steps.append(WaitHealthy(svc, phase, instances=reused, recheck=True))
    if new:
        steps.append(WaitHealthy(svc, phase, instances=new))
    serving = tuple(i.name for i in taken) + new
    leaving = tuple(i.name for i in others)
    if any(not i.serving for i in taken) or new or any(i.serving for i in others):
        weights = tuple((n, 1) for n in serving) + tuple((n, 0) for n in leaving)
        steps.append(SetWeights(svc, phase, weights=weights))
    steps.append(MarkCurrent(svc, phase, release=release))
    warm = tuple(i.name for i in others if keep_warm > 0 and i.serving and i.release != release)
    retire = tuple(i.name for i in others if i.name not in warm)
    if retire:
        if scale_down_delay > 0:
            steps.append(
                Pause(svc, phase, seconds=scale_down_delay, reason="abort_scale_down_delay")
            )
        steps.append(DrainInstances(svc, phase, instances=retire))
        steps.append(StopInstances(svc, phase, instances=retire))
    if warm:
        steps.append(KeepWarm(svc, phase, instances=warm, seconds=keep_warm))
    return steps
