"""Rolling in host batches (`strategy: {type: rolling, batch: 1 | "25%"}`).

The hosts that carry a service are taken `batch` at a time, in their listed
order (then any host that runs an instance of it but no longer carries it).
For each batch: the new instances placed on its hosts start beside the old
ones and are health-gated, one weight change moves the traffic onto them and
off the batch's old instances, which then drain and stop. Capacity never
drops below what served before (or the replicas wanted, if fewer), and a
batch never takes away the last serving instance of the service across the
fleet: an old instance whose stop would go below that (its batch started
fewer than it had, the old ones being unevenly spread) stays, serving,
until a later batch's new instances make room. A service that goes away
stops all at once.

New instances are spread as `placement.place` spreads them: each host gets
its share of the replicas, fewer where kept instances of the release already
run, the remainder to the hosts listed first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def batch_size(batch: int | str, hosts: int) -> int:
    """How many hosts one batch takes: a count, or a share of `hosts` rounded up (at least
    one host, at most all of them).

    >>> batch_size(1, 3), batch_size("25%", 3), batch_size("50%", 4), batch_size(5, 3)
    (1, 1, 2, 3)
    """
    if isinstance(batch, str):
        size = math.ceil(round(float(batch.strip().rstrip("%")) / 100 * hosts, 9))
    else:
        size = batch
    return max(1, min(size, max(hosts, 1)))


def batches(hosts: Sequence[str], batch: int | str) -> list[tuple[str, ...]]:
    """`hosts` in consecutive groups of `batch_size(batch, len(hosts))`.

    >>> batches(("h1", "h2", "h3"), "50%")
    [('h1', 'h2'), ('h3',)]
    """
    size = batch_size(batch, len(hosts))
    return [tuple(hosts[i : i + size]) for i in range(0, len(hosts), size)]


def spread(goal: ServiceGoal, kept: Sequence[str]) -> dict[str, int]:
    """How many new instances each host of the goal gets, so that with the `kept` ones
    every host carries as even a share of the replicas as possible."""
    where = {i.name: i.host for i in goal.observed}
    load = dict.fromkeys(goal.hosts, 0)
    for name in kept:
        if where.get(name) in load:
            load[where[name]] += 1
    order = {host: n for n, host in enumerate(goal.hosts)}
    new = dict.fromkeys(goal.hosts, 0)
    desired = goal.replicas if goal.release is not None else 0
    for _ in range(max(0, desired - len(kept))):
        host = min(goal.hosts, key=lambda h: (load[h], order[h]))
        load[host] += 1
        new[host] += 1
    return new


def plan_host_batches(goal: ServiceGoal, batch: int | str, phase: str = FORWARD) -> list[Step]:
    """Steps that move one service to `goal`, its hosts' instances replaced `batch` hosts
    at a time (the module's docstring has the rules)."""
    svc = goal.service
    parts = partition(goal)
    steps: list[Step] = []
    if parts.discard:
        steps.append(StopInstances(svc, phase, instances=parts.discard))
    where = {i.name: i.host for i in goal.observed}
    hosts = list(goal.hosts)
    hosts += [h for h in dict.fromkeys(where[n] for n in parts.retire) if h not in hosts]
    placing = spread(goal, parts.keep)
    serving_new = list(parts.keep)
    serving_old = list(parts.retire)
    # Never fewer serving than before the deploy (or than wanted, if fewer), never none.
    floor = max(1, min(len(serving_new) + len(serving_old), goal.replicas))
    done: set[str] = set()  # old instances whose batch came: to stop as soon as allowed
    counter = 0
    for group in batches(hosts, batch) if goal.release is not None else []:
        names: list[str] = []
        on: list[str] = []
        for host in group:
            for _ in range(placing.get(host, 0)):
                counter += 1
                names.append(goal.new_name(counter))
                on.append(host)
        if names:
            assert goal.release is not None
            started = tuple(names)
            steps.append(
                StartInstances(svc, phase, release=goal.release, instances=started, hosts=tuple(on))
            )
            steps.append(WaitHealthy(svc, phase, instances=started))
            serving_new.extend(started)
        done.update(n for n in serving_old if where.get(n) in group)
        room = len(serving_new) + len(serving_old) - floor
        leaving = [n for n in serving_old if n in done][: max(0, room)]
        if not names and not leaving:
            continue
        serving_old = [n for n in serving_old if n not in leaving]
        routed = serving_old + serving_new
        steps.append(SetWeights(svc, phase, weights=tuple((n, 1) for n in routed)))
        if leaving:
            steps.append(DrainInstances(svc, phase, instances=tuple(leaving)))
            steps.append(StopInstances(svc, phase, instances=tuple(leaving)))
    if serving_old:  # those kept serving above, or every one when the service goes away
        if serving_new:
            steps.append(SetWeights(svc, phase, weights=tuple((n, 1) for n in serving_new)))
        steps.append(DrainInstances(svc, phase, instances=tuple(serving_old)))
        steps.append(StopInstances(svc, phase, instances=tuple(serving_old)))
    steps.append(MarkCurrent(svc, phase, release=goal.release))
    return steps
