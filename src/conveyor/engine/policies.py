"""Environment policies a deploy must meet before anything changes.

`check_policies` gathers every refusal with what to do about it: the
pipeline gate, `promote_from`, `branches`, deploy windows and freezes. An
override flag (`--force` for the pipeline, `--override-window` for windows
and freezes) lets a refusal through, and the override is recorded on the
deployment and as an event. Approvals are not a refusal but a wait: see
`conveyor.engine.approvals`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError
from conveyor.policies import Freeze, Window, branch_allowed, deploy_window
from conveyor.store.records import SUCCEEDED, ReleaseRecord

if TYPE_CHECKING:
    from conveyor.config.models import FreezeConfig, WindowConfig
    from conveyor.engine.deployments import Proposal
    from conveyor.engine.runtime import Runtime


class PolicyRefusedError(ConveyorError):
    """A deploy does not meet its environment's policies (exit 1, nothing changed)."""


@dataclass(frozen=True)
class Overrides:
    """What the deployer chose to let through, each recorded."""

    pipeline: bool = False  # --force
    window: bool = False  # --override-window


@dataclass
class Verdict:
    """The policies' answer: refusals left, and the ones overridden (to record)."""

    refusals: list[str] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)


def check_policies(
    rt: Runtime, proposal: Proposal, overrides: Overrides, now: datetime | None = None
) -> Verdict:
    """Every policy of the proposal's environment that the deploy would break."""
    verdict = Verdict()
    env = rt.environment(proposal.environment)
    changing = _changing(rt, proposal)
    if env.promote_from is not None:
        missing = [
            f"{r.service} {r.id} has not succeeded in {env.promote_from}"
            for r in changing
            if not _succeeded_in(rt, env.promote_from, r)
        ]
        if missing:
            verdict.refusals += missing
            verdict.hints.append(
                f"deploy it to {env.promote_from} first, then: conveyor promote "
                f"{env.promote_from} {proposal.environment}"
            )
    if env.branches:
        for release in changing:
            problem = _branch_problem(rt, env.branches, release)
            if problem:
                verdict.refusals.append(problem)
    if env.windows or env.freeze:
        state = deploy_window(
            [_window(w) for w in env.windows],
            [_freeze(f) for f in env.freeze],
            now or datetime.now(UTC),
        )
        if not state.allowed:
            when = (
                f"; next allowed at {state.next_allowed:%Y-%m-%d %H:%M} UTC"
                if state.next_allowed
                else ""
            )
            if overrides.window:
                verdict.overridden.append(f"{state.reason} (deployed with --override-window)")
            else:
                verdict.refusals.append(f"{state.reason}{when}")
                verdict.hints.append("wait, or deploy with --override-window (recorded)")
    if env.require_pipeline:
        problems = _pipeline_problems(rt, changing)
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


def _changing(rt: Runtime, proposal: Proposal) -> list[ReleaseRecord]:
    """The releases the deploy brings in (the others run already)."""
    out = []
    for service, release_id in sorted(proposal.releases.items()):
        if proposal.previous.get(service) == release_id:
            continue
        release = rt.store.get_release(service, release_id)
        if release is not None:  # verify_release reports a missing one
            out.append(release)
    return out


def _pipeline_problems(rt: Runtime, releases: list[ReleaseRecord]) -> list[str]:
    from conveyor.pipeline.runs import pipeline_problem

    problems = (pipeline_problem(rt.store, release) for release in releases)
    return [p for p in problems if p is not None]


def _succeeded_in(rt: Runtime, environment: str, release: ReleaseRecord) -> bool:
    return any(
        d.status == SUCCEEDED and d.releases.get(release.service) == release.id
        for d in rt.store.list_deployments(environment)
    )


def _branch_problem(rt: Runtime, patterns: list[str], release: ReleaseRecord) -> str | None:
    from conveyor.git import branches_containing

    allowed = ", ".join(patterns)
    if release.git_commit is None or release.manifest.get("dirty"):
        return (
            f"{release.service} {release.id} was built from uncommitted changes, which are on "
            f"no branch (allowed: {allowed})"
        )
    branches = branches_containing(rt.loaded.root, release.git_commit)
    if branch_allowed(patterns, branches):
        return None
    on = ", ".join(branches) or "no branch"
    return (
        f"{release.service} {release.id}: commit {release.git_commit[:12]} is on {on}, "
        f"not on a branch allowed here ({allowed})"
    )


def _window(w: WindowConfig) -> Window:
    return Window(tuple(w.days), _clock(w.start), _clock(w.end), w.timezone)


def _freeze(f: FreezeConfig) -> Freeze:
    return Freeze(f.start, f.end, f.reason, f.timezone)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
