"""Placement: which host each new instance runs on, and which releases go where first.

Pure functions over planned steps. A planner decides how many instances start
and stop in which order; `place` then gives each started instance a host,
spreading every service's replicas over the hosts that carry it (a planner
that chose the hosts itself, `host_batches`, keeps its choice): the host
that will carry the fewest instances of the service once the plan ran (those
observed that the plan keeps, plus those it placed there already), then the
one running the fewest at that point of the plan, then the host listed
first. Planners keep at least one serving instance of a service at every
step, counted across all hosts, so no batch takes the last one away wherever
it runs (`tests/engine/test_planners.py` checks both over three hosts).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from conveyor.engine.plan import (
    FORWARD,
    CheckMigration,
    Migrate,
    PendingMigrations,
    ShipRelease,
    StartInstances,
    Step,
    StopInstances,
)
from conveyor.engine.strategies.base import ServiceGoal


def place(steps: Sequence[Step], goal: ServiceGoal) -> list[Step]:
    """`steps` (of `goal.service`) with a host for every instance they start."""
    if not goal.hosts:
        raise ValueError(f"no host carries {goal.service}")
    service = goal.service
    where = {i.name: i.host for i in goal.observed}
    stopped = {
        name
        for step in steps
        if isinstance(step, StopInstances) and step.service == service
        for name in step.instances
    }
    order = {host: n for n, host in enumerate(goal.hosts)}
    # What each host will carry once the plan ran, and what it runs at this point of it.
    kept = dict.fromkeys(goal.hosts, 0)
    now = dict.fromkeys(goal.hosts, 0)
    for name, host in where.items():
        if host in now:
            now[host] += 1
            kept[host] += name not in stopped
    out: list[Step] = []
    for step in steps:
        if isinstance(step, StartInstances) and step.service == service:
            hosts: list[str] = []
            chosen = dict(zip(step.instances, step.hosts, strict=False))  # by the planner
            for name in step.instances:
                host = (
                    where.get(name)
                    or chosen.get(name)
                    or min(goal.hosts, key=lambda h: (kept[h], now[h], order[h]))
                )
                where[name] = host
                kept[host] = kept.get(host, 0) + (name not in stopped)
                now[host] = now.get(host, 0) + 1
                hosts.append(host)
            step = dataclasses.replace(step, hosts=tuple(hosts))
        elif isinstance(step, StopInstances) and step.service == service:
            for name in step.instances:
                ran_on = where.get(name)
                if ran_on in now:
                    now[ran_on] -= 1
        out.append(step)
    return out


def with_shipping(
    steps: Sequence[Step], ships: bool, run_hosts: Mapping[str, str] | None = None
) -> list[Step]:
    """`steps` with, when the target `ships` releases, one `ShipRelease` per release and
    host the plan starts instances on, and per release whose release phase (migrations)
    runs on its service's host in `run_hosts`, first of all (before anything changes, so
    that a release that cannot be shipped refuses the deployment). Nothing for the local
    target."""
    if not ships:
        return list(steps)
    wanted: dict[tuple[str, str, str], str] = {}
    for step in steps:
        if isinstance(step, StartInstances):
            for host in step.hosts:
                wanted.setdefault((step.service, step.release, host), step.phase)
        elif isinstance(step, PendingMigrations | CheckMigration | Migrate):
            runs_on = (run_hosts or {}).get(step.service)
            if runs_on is not None:
                wanted.setdefault((step.service, step.release, runs_on), step.phase)
    if not wanted:
        return list(steps)
    ships_first = [
        ShipRelease(service, phase, release=release, host=host)
        for (service, release, host), phase in wanted.items()
        if phase == FORWARD
    ]
    reverts = [
        ShipRelease(service, phase, release=release, host=host)
        for (service, release, host), phase in wanted.items()
        if phase != FORWARD
    ]
    return [*ships_first, *reverts, *steps]
