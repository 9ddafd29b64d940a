"""The hosts a journaled step acted on, for `conveyor explain` of a deploy on many hosts.

Start and ship steps name their hosts themselves; the steps that act on
instances started before (wait, smoke-test, drain, stop, keep warm) name only
the instances. Their hosts come from the `start` steps of the plans that
started them (pure functions over serialized plans).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from conveyor.targets.base import LOCAL_HOST

if TYPE_CHECKING:
    from conveyor.engine.plan import Step
    from conveyor.store.repository import Store

# Steps whose own description already says where they act.
NAMES_ITS_HOSTS = ("start", "ship")


def instance_hosts(plans: Iterable[list[dict[str, Any]]]) -> dict[str, str]:
    """Instance name -> the host its `start` step placed it on, over `plans` (serialized
    steps, as deployments record them); a step journaled before hosts existed gives none."""
    found: dict[str, str] = {}
    for plan in plans:
        for step in plan:
            if step.get("kind") != "start":
                continue
            names, hosts = step.get("instances") or (), step.get("hosts") or ()
            if len(names) == len(hosts):
                found.update(zip(names, hosts, strict=True))
    return found


def plan_hosts(plan: Iterable[Mapping[str, Any]]) -> list[str]:
    """The hosts a deployment shipped releases to or started instances on, sorted (none on
    this machine only): what `conveyor history` lists per deployment."""
    found: set[str] = set()
    for step in plan:
        if step.get("kind") == "ship" and step.get("host"):
            found.add(str(step["host"]))
        elif step.get("kind") == "start":
            found.update(str(h) for h in step.get("hosts") or ())
    return [] if found <= {LOCAL_HOST} else sorted(found)


def step_hosts(step: Mapping[str, Any], hosts: Mapping[str, str]) -> list[str]:
    """The hosts a step acts on, in the order of its instances; none for a step that names
    its own, acts on no instance, or runs on this machine only."""
    if step.get("kind") in NAMES_ITS_HOSTS:
        return []
    names = list(step.get("instances") or ())
    if step.get("instance"):
        names.append(step["instance"])
    where = list(dict.fromkeys(hosts[n] for n in names if n in hosts))
    return [] if set(where) <= {LOCAL_HOST} else where


def where(hosts: list[str]) -> str:
    """`" on host1, host2"` (nothing without hosts): what a step's line gets appended."""
    return f" on {', '.join(hosts)}" if hosts else ""


def live_step_hosts(step: Step, store: Store, environment: str) -> list[str]:
    """The hosts of a step about to run, from the instance records (the progress line of a
    deploy: `[api] stop fleet-api-3832-2 on host2`)."""
    data = {
        "kind": step.kind,
        "instances": getattr(step, "instances", ()),
        "instance": getattr(step, "instance", ""),
    }
    if step.kind in NAMES_ITS_HOSTS or not (data["instances"] or data["instance"]):
        return []
    recorded = {i.name: i.host for i in store.list_instances(environment=environment)}
    return step_hosts(data, recorded)
