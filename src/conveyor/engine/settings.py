"""Resolving each service's settings once, when a plan is made.

The instance steps of a plan (start, wait_healthy, drain, stop) carry the
`InstanceSettings` their handlers need. Plans journaled by a Conveyor from
before settings existed have none: `with_settings` fills them when such a
plan is resumed, from the config of that moment (what those versions did at
every step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.engine.plan import (
    DrainInstances,
    InstanceSettings,
    StartInstances,
    Step,
    StopInstances,
    WaitHealthy,
)

if TYPE_CHECKING:
    from conveyor.config import Config

SETTLED = (StartInstances, WaitHealthy, DrainInstances, StopInstances)


def resolve(config: Config, environment: str, service: str) -> InstanceSettings:
    """The settings of `service` in `environment` that its instance steps need."""
    from conveyor.engine.strategies.choice import min_ready

    svc = config.service_for(environment, service)
    return InstanceSettings(
        health=svc.health.model_dump(mode="json") if svc.health is not None else {},
        deploy_timeout=svc.deploy_timeout,
        stop_timeout=svc.stop_timeout,
        drain_timeout=svc.drain_timeout,
        min_ready=min_ready(config, environment, service),
        worker=svc.route is None,
        stop_signal=svc.stop_signal,
    )


def with_settings(config: Config, environment: str, steps: Sequence[Step]) -> list[Step]:
    """`steps`, each instance step with its service's settings (kept when it has them)."""
    resolved: dict[str, InstanceSettings] = {}
    out: list[Step] = []
    for step in steps:
        if isinstance(step, SETTLED) and step.settings is None:
            if step.service not in resolved:
                resolved[step.service] = resolve(config, environment, step.service)
            step = dataclasses.replace(step, settings=resolved[step.service])
        out.append(step)
    return out


def settings_of(
    step: StartInstances | WaitHealthy | DrainInstances | StopInstances,
) -> InstanceSettings:
    """The step's settings; a plan always has them once `with_settings` ran."""
    if step.settings is None:  # pragma: no cover - every stored plan goes through with_settings
        raise ValueError(f"step {step.describe()} has no settings: the plan was not resolved")
    return step.settings
