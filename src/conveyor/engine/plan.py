"""Plan steps: small, typed, serializable, idempotent units of work.

A strategy turns (config, observed state) into a `Plan`. The executor runs
the steps in order and journals each one; every step can be run again after
a crash without harm (starting a running instance, setting the same weights
or stopping a stopped instance are no-ops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

# Phases of a deployment's plan.
FORWARD = "forward"  # moving to the new releases
REVERT = "revert"  # restoring the previous releases (rollback on failure, abort)


@dataclass(frozen=True)
class Step:
    """Base of all steps: which service it concerns and in which phase it runs."""

    kind: ClassVar[str] = "step"
    service: str
    phase: str = FORWARD

    def describe(self) -> str:
        """One line for `--dry-run`, the journal and `history`."""
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class StartInstances(Step):
    """Start instances of a release and register them with the router at weight 0."""

    kind: ClassVar[str] = "start"
    release: str = ""
    instances: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"start {_names(self.instances)} ({self.service} {self.release})"


@dataclass(frozen=True)
class WaitHealthy(Step):
    """Wait until each instance passes its health check (then `min_ready`)."""

    kind: ClassVar[str] = "wait_healthy"
    instances: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"wait until {_names(self.instances)} healthy"


@dataclass(frozen=True)
class SetWeights(Step):
    """Set the complete traffic weights of a service; instances absent get none."""

    kind: ClassVar[str] = "set_weights"
    weights: tuple[tuple[str, int], ...] = ()

    def describe(self) -> str:
        shares = ", ".join(f"{name}={weight}" for name, weight in self.weights) or "nothing"
        return f"route {self.service} traffic to {shares}"

    def as_mapping(self) -> dict[str, int]:
        return dict(self.weights)


@dataclass(frozen=True)
class DrainInstances(Step):
    """Take instances out of rotation and wait for their in-flight requests."""

    kind: ClassVar[str] = "drain"
    instances: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"drain {_names(self.instances)}"


@dataclass(frozen=True)
class StopInstances(Step):
    """Stop instances gracefully and forget them."""

    kind: ClassVar[str] = "stop"
    instances: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"stop {_names(self.instances)}"


@dataclass(frozen=True)
class MarkCurrent(Step):
    """Record `release` as the service's current release in the environment."""

    kind: ClassVar[str] = "mark_current"
    release: str | None = None

    def describe(self) -> str:
        if self.release is None:
            return f"mark {self.service} as not deployed"
        return f"mark {self.service} {self.release} as current"


STEP_TYPES: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (StartInstances, WaitHealthy, SetWeights, DrainInstances, StopInstances, MarkCurrent)
}


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps for one environment."""

    environment: str
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.steps)

    def describe(self) -> list[str]:
        return [f"{i + 1:>3}. [{s.service}] {s.describe()}" for i, s in enumerate(self.steps)]


def step_from_dict(data: dict[str, Any]) -> Step:
    """Rebuild a step serialized by `Step.to_dict` (the journal stores plans so)."""
    values = dict(data)
    cls = STEP_TYPES[values.pop("kind")]
    for key in ("instances",):
        if key in values:
            values[key] = tuple(values[key])
    if "weights" in values:
        values["weights"] = tuple((str(n), int(w)) for n, w in values["weights"])
    return cls(**values)


def steps_to_json(steps: tuple[Step, ...] | list[Step]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in steps]


def steps_from_json(data: list[dict[str, Any]]) -> list[Step]:
    return [step_from_dict(d) for d in data]


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names) if names else "nothing"
