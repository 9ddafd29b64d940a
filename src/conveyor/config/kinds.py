"""What kind of process each service is, the order a deploy handles them in, and the
rules of the keys that decide both. Pure.

A service receives requests when it has a `route:`; the default route (`{path: /}`)
goes to the service named `web`, or to the only service when there is one (the
`Config` model fills it in). Every other service is a **worker**: no port, no router
entry, no traffic. `singleton: true` makes a service (worker or not) a **singleton**:
one instance, never two at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from conveyor.config.models.strategies import PROGRESSIVE

if TYPE_CHECKING:
    from conveyor.config.models import Config, ServiceConfig

WEB = "web"
WORKER = "worker"
SINGLETON = "singleton"
# The kind `status` gives the entries of `accessories:` (long-lived backing services that
# deploys do not roll); they are not services, so `service_kind` never returns it.
ACCESSORY = "accessory"
KINDS = (WEB, WORKER, SINGLETON, ACCESSORY)

WORKER_MIN_READY = 2.0  # seconds a worker's process must run before it counts as healthy

ROUTE_HINT = "give it a route: (like route: {path: /jobs}) to receive requests"


def service_kind(service: ServiceConfig) -> str:
    """`singleton`, `web` (it receives requests) or `worker`, of a service of a validated
    `Config` (where the default route is filled in)."""
    if service.singleton:
        return SINGLETON
    return WEB if service.route is not None else WORKER


def service_order(after: Mapping[str, Sequence[str]]) -> list[str]:
    """The services in the order a deploy handles them: each after the services its
    `after:` names, otherwise in the order of the file. Names that are not services are
    left out of the graph; a cycle raises `ValueError` (the config rules refuse both).

    >>> service_order({"worker": ["web"], "beat": ["web"], "web": []})
    ['web', 'worker', 'beat']
    """
    done: list[str] = []
    while len(done) < len(after):
        ready = [
            name
            for name, needs in after.items()
            if name not in done and all(n in done or n not in after for n in needs)
        ]
        if not ready:
            left = ", ".join(n for n in after if n not in done)
            raise ValueError(f"the after: lists of {left} go round in a circle")
        done.append(ready[0])
    return done


def ordered_services(config: Config) -> list[str]:
    """`service_order` of a config's services."""
    return service_order({name: svc.after for name, svc in config.services.items()})


def kind_issues(config: Config) -> list[str]:
    """The `key/path: problem` lines of workers, singletons, `after:` and the services' own
    `strategy:` (the loader's rules across fields)."""
    from conveyor.pipeline.graph import find_cycle

    issues: list[str] = []
    known = ", ".join(config.services)
    for name, service in config.services.items():
        issues.extend(_service_issues(config, name, service))
        for other in service.after:
            if other == name:
                issues.append(f"services/{name}/after: a service cannot come after itself")
            elif other not in config.services:
                issues.append(
                    f'services/{name}/after: unknown service "{other}" (services are: {known})'
                )
    cycle = find_cycle({n: [a for a in s.after if a != n] for n, s in config.services.items()})
    if cycle:
        issues.append(
            f"services/{cycle[0]}/after: the after: lists go round in a circle "
            f"({' after '.join(cycle)}), so no service could be deployed first"
        )
    return issues


def _service_issues(config: Config, name: str, service: ServiceConfig) -> list[str]:
    where = f"services/{name}"
    issues: list[str] = []
    strategy = service.strategy
    if service.route is None:
        what = f"{name} has no route: it is a worker (no port, no requests)"
        health = service.health
        if health is not None and health.type != "command":
            issues.append(
                f"{where}/health: {what}, so a {health.type} check has nothing to reach: "
                f"use {{type: command, command: ...}} or leave health out; or {ROUTE_HINT}"
            )
        if service.smoke:
            issues.append(
                f"{where}/smoke: {what}, so there is nothing to smoke-test: check it with "
                f"health: {{type: command, command: ...}}; or {ROUTE_HINT}"
            )
        if strategy is not None and strategy.type in PROGRESSIVE:
            issues.append(
                f"{where}/strategy: {what}: there is no traffic for {strategy.type} to split; "
                "use rolling, immediate or recreate"
            )
    if service.singleton:
        counts = [(f"{where}/replicas", service.replicas)] + [
            (f"environments/{env}/services/{name}/replicas", override.replicas)
            for env, environment in config.environments.items()
            if (override := environment.services.get(name)) is not None
        ]
        issues.extend(
            f"{at}: {name} is a singleton (singleton: true), which runs exactly one "
            f"instance; got {count}"
            for at, count in counts
            if count is not None and count != 1
        )
        if strategy is not None and strategy.type != "recreate":
            issues.append(
                f"{where}/strategy: {name} is a singleton: its old instance always stops "
                f"before the new one starts (recreate), never {strategy.type}; remove strategy"
            )
    if strategy is not None and strategy.type == "rolling":
        issues.extend(_rolling_issues(config, f"{where}/strategy", strategy))
    return issues


def _rolling_issues(config: Config, where: str, strategy: object) -> list[str]:
    from conveyor.config.hosts import HOST_TARGET
    from conveyor.config.models import StrategyConfig

    assert isinstance(strategy, StrategyConfig)
    issues: list[str] = []
    if (
        strategy.batch is None
        and is_zero_step(strategy.max_surge)
        and is_zero_step(strategy.max_unavailable)
    ):
        issues.append(
            f"{where}: max_surge and max_unavailable are both 0, so a rolling deploy could "
            "never replace an instance (set max_surge to 1)"
        )
    if strategy.batch is not None:
        local = sorted(n for n, e in config.environments.items() if e.target != HOST_TARGET)
        if local:
            issues.append(
                f"{where}/batch: batches are of hosts, and only `target: {HOST_TARGET}` runs "
                f"on hosts (not environment {', '.join(local)}); use max_surge/max_unavailable"
            )
        if "max_surge" in strategy.model_fields_set:
            issues.append(f"{where}/batch: batch and max_surge conflict; remove one")
    return issues


def is_zero_step(step: int | str) -> bool:
    """Whether a `max_surge`/`max_unavailable` value is zero (0, "0%")."""
    return step == 0 or (isinstance(step, str) and step.rstrip("%").lstrip("0") == "")
