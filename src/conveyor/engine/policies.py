"""Environment policies a deploy must meet before anything changes.

`check_policies` gathers every refusal with what to do about it; an override
flag (`--force` for the pipeline gate) lets a refusal through, and the
override is recorded on the deployment and as an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.engine.deployments import Proposal
    from conveyor.engine.runtime import Runtime


class PolicyRefusedError(ConveyorError):
    """A deploy does not meet its environment's policies (exit 1, nothing changed)."""


@dataclass(frozen=True)
class Overrides:
    """What the deployer chose to let through, each recorded."""

    pipeline: bool = False  # --force


@dataclass
class Verdict:
    """The policies' answer: refusals left, and the ones overridden (to record)."""

    refusals: list[str] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)


def check_policies(rt: Runtime, proposal: Proposal, overrides: Overrides) -> Verdict:
    """Every policy of the proposal's environment that the deploy would break."""
    verdict = Verdict()
    env = rt.environment(proposal.environment)
    if env.require_pipeline:
        problems = _pipeline_problems(rt, proposal)
        if overrides.pipeline:
            verdict.overridden += [f"{p} (deployed with --force)" for p in problems]
        elif problems:
            verdict.refusals += problems
            verdict.hints.append(
                "run `conveyor pipeline run` at the release's commit (or `conveyor pipeline "
                "run --release ID`), or deploy with --force (recorded)"
            )
    return verdict


def enforce(rt: Runtime, proposal: Proposal, overrides: Overrides) -> list[str]:
    """Raise `PolicyRefusedError` on a refusal; return the overridden ones (to record)."""
    verdict = check_policies(rt, proposal, overrides)
    if verdict.refusals:
        listed = "\n".join(f"  {r}" for r in verdict.refusals)
        raise PolicyRefusedError(
            f"{proposal.environment} refuses this deploy:\n{listed}",
            hint="; ".join(verdict.hints) or None,
        )
    return verdict.overridden


def _pipeline_problems(rt: Runtime, proposal: Proposal) -> list[str]:
    from conveyor.pipeline.runs import pipeline_problem

    problems = []
    for service, release_id in sorted(proposal.releases.items()):
        if proposal.previous.get(service) == release_id:
            continue  # not changing
        release = rt.store.get_release(service, release_id)
        if release is None:
            continue  # verify_release reports it
        problem = pipeline_problem(rt.store, release)
        if problem is not None:
            problems.append(problem)
    return problems
