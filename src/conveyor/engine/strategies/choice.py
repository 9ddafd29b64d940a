"""Which strategy deploys each service, and what a worker's plan leaves out. Pure.

A singleton is always replaced stop-first (recreate): never two at once, whatever the
environment's strategy. A service's own `strategy:` wins over the environment's. A
worker gets no traffic, so under an environment's canary or blue_green it rolls, and
its plans have no weights and no drain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.config.kinds import WORKER_MIN_READY
from conveyor.config.models import PROGRESSIVE, StrategyConfig, StrategySpec
from conveyor.engine.plan import DrainInstances, SetWeights, Step

if TYPE_CHECKING:
    from conveyor.config.models import Config


def service_strategy(config: Config, environment: str, service: str) -> StrategySpec:
    """The strategy that deploys `service` in `environment`."""
    svc = config.services[service]
    base = svc.strategy or config.environments[environment].strategy
    if svc.singleton and base.type != "recreate":
        return _plain("recreate", base)
    if svc.route is None and base.type in PROGRESSIVE:
        return _plain("rolling", base)
    return base


def _plain(kind: str, base: StrategySpec) -> StrategyConfig:
    """A `kind` strategy with the defaults, keeping `base`'s min_ready when it sets one."""
    chosen = StrategyConfig.model_validate({"type": kind})
    if "min_ready" in base.model_fields_set:
        chosen = chosen.model_copy(update={"min_ready": base.min_ready})
    return chosen


def min_ready(config: Config, environment: str, service: str) -> float:
    """How long a new instance of `service` must stay healthy: its strategy's `min_ready`;
    a worker's when left out is `WORKER_MIN_READY` (a crash at boot must be seen)."""
    strategy = service_strategy(config, environment, service)
    if config.services[service].route is None and "min_ready" not in strategy.model_fields_set:
        return max(strategy.min_ready, WORKER_MIN_READY)
    return strategy.min_ready


def without_traffic(steps: Sequence[Step]) -> list[Step]:
    """A worker's plan: the steps of its strategy but the weights and drains (it has no
    router entry and no requests in flight)."""
    return [s for s in steps if not isinstance(s, SetWeights | DrainInstances)]
