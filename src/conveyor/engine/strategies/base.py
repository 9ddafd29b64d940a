"""Inputs every planner shares: what should run and what runs now."""

from __future__ import annotations

from dataclasses import dataclass

# Roles of an instance during a canary (`ObservedInstance.role`).
CANARY = "canary"
BASELINE = "baseline"  # the stable release, started by the canary beside it
STABLE = "stable"


@dataclass(frozen=True)
class ObservedInstance:
    """An instance as observed: its release and whether the router sends it traffic.

    `state` is the recorded state ("ready", "serving", "warm", ...), `role` is
    set while a deployment is unfinished (CANARY, BASELINE or STABLE).
    """

    name: str
    release: str
    serving: bool
    state: str = ""
    role: str = ""
    host: str = "local"  # the host it runs on

    @property
    def running(self) -> bool:
        """Started and once healthy: it can take traffic again after a quick check."""
        return self.serving or self.state in ("ready", "serving", "warm")


@dataclass(frozen=True)
class ServiceGoal:
    """Where one service of an environment should end up."""

    service: str
    release: str | None  # None: the service should not run at all
    replicas: int
    observed: tuple[ObservedInstance, ...] = ()
    name_prefix: str = ""  # new instances are named f"{name_prefix}-{n}"
    hosts: tuple[str, ...] = ("local",)  # the hosts that carry the service (placement)

    def new_name(self, n: int) -> str:
        return f"{self.name_prefix}-{n}"


@dataclass(frozen=True)
class Partition:
    """The observed instances sorted by what the plan does with them."""

    keep: tuple[str, ...]  # serving instances of the target release, kept as they are
    retire: tuple[str, ...]  # serving instances to replace (other releases, surplus)
    discard: tuple[str, ...]  # instances without traffic: stopped first, no drain needed


def partition(goal: ServiceGoal) -> Partition:
    """Split observed instances into kept, retired and discarded ones.

    Instances that receive no traffic are discarded even when they run the
    target release: they come from an interrupted deploy and their health is
    unknown, so fresh ones are started instead.
    """
    keep: list[str] = []
    retire: list[str] = []
    discard: list[str] = []
    for instance in goal.observed:
        if not instance.serving:
            discard.append(instance.name)
        elif instance.release == goal.release and len(keep) < goal.replicas:
            keep.append(instance.name)
        else:
            retire.append(instance.name)
    return Partition(tuple(keep), tuple(retire), tuple(discard))
