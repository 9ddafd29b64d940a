"""A deployment's journal as the dashboard shows it: a timeline of entries, each with a
stable key, and the buttons a token may press on it.

Built from the store only (the deployment, its steps, its events, its approvals and
its analysis measurements), by the page and by the live stream alike
(`conveyor.server.events`): the stream sends an entry again whenever what it shows
changed, and the page's script puts it in place by its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.server.access import Action, refusal
from conveyor.store.records import (
    AWAITING_APPROVAL,
    PAUSED,
    RUNNING,
    SUCCEEDED,
    UNFINISHED_STATUSES,
    ApprovalRecord,
    DeploymentRecord,
    EventRecord,
    StepRecord,
    TokenRecord,
)


@dataclass(frozen=True)
class Entry:
    """One line of the timeline."""

    key: str  # the element's id: stable across updates
    time: datetime
    status: str  # a CSS class: done, running, failed, paused, skipped, info, ...
    title: str
    detail: str = ""


@dataclass(frozen=True)
class Journal:
    """What the store holds about one deployment, read at once."""

    deployment: DeploymentRecord
    steps: list[StepRecord]
    events: list[EventRecord]
    approvals: list[ApprovalRecord]
    analyses: list[dict[str, Any]]  # {"step", "analysis", "run", "spec", "measurements"}

    @property
    def finished(self) -> bool:
        return self.deployment.status not in UNFINISHED_STATUSES


def read_journal(store: Any, deployment: DeploymentRecord, measurements: bool = True) -> Journal:
    """The journal of `deployment` (its measurements too, unless told not to)."""
    from conveyor.engine.explain import analysis_runs

    analyses = []
    if measurements:
        analyses = [
            {
                "step": run.step_index,
                "analysis": run.analysis,
                "run": run.run,
                "spec": run.rows[0].data.get("spec"),
                "measurements": run.records,
            }
            for run in analysis_runs(store, deployment.id)
        ]
    return Journal(
        deployment=deployment,
        steps=store.list_steps(deployment.id),
        events=list(reversed(store.list_events(deployment_id=deployment.id))),
        approvals=store.list_approvals(deployment.id),
        analyses=analyses,
    )


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(start: datetime, end: datetime | None) -> str:
    if end is None:
        return ""
    return f"{(_utc(end) - _utc(start)).total_seconds():.1f} s"


def releases_text(releases: dict[str, str]) -> str:
    return ", ".join(f"{service}={release}" for service, release in sorted(releases.items()))


def timeline(journal: Journal) -> list[Entry]:
    """The entries of the journal, by time (the start first, the end last)."""
    d = journal.deployment
    entries = [
        Entry(
            "start",
            _utc(d.started_at),
            "info",
            f"{d.kind} started by {d.user} ({d.strategy})",
            releases_text(d.releases) + (f" - {d.reason}" if d.reason else ""),
        )
    ]
    for step in journal.steps:
        took = _seconds(step.started_at, step.finished_at)
        detail = " - ".join(part for part in (took, step.error or "") if part)
        entries.append(
            Entry(
                f"step-{step.index}",
                _utc(step.started_at),
                step.status,
                f"step {step.index}: {step.description}",
                detail,
            )
        )
    for event in journal.events:
        entries.append(
            Entry(f"event-{event.id}", _utc(event.time), "info", event.kind, event.message)
        )
    for n, approval in enumerate(journal.approvals):
        verb = "approved" if approval.approve else "rejected"
        entries.append(
            Entry(
                f"approval-{n}",
                _utc(approval.at),
                "done" if approval.approve else "failed",
                f"{verb} by {approval.user}",
                approval.message or "",
            )
        )
    for run in journal.analyses:
        rows = run["measurements"]
        if not rows:
            continue
        verdict = rows[-1].get("verdict", {})
        decision = str(verdict.get("decision", "CONTINUE"))
        status = {"PASS": "done", "FAIL": "failed", "INCONCLUSIVE": "paused"}.get(
            decision, "running"
        )
        first = datetime.fromtimestamp(float(rows[0].get("time", 0.0)), UTC)
        entries.append(
            Entry(
                f"analysis-{run['step']}-{run['run']}",
                first,
                status,
                f"analysis {run['analysis']} (step {run['step']}, run {run['run']}): {decision}",
                f"{len(rows)} measurements - {verdict.get('message', '')}",
            )
        )
    entries.sort(key=lambda e: e.time)
    if d.finished_at is not None:
        entries.append(
            Entry(
                "end",
                _utc(d.finished_at),
                d.status,
                f"{d.status.replace('_', ' ')} after {_seconds(d.started_at, d.finished_at)}",
                d.error or "",
            )
        )
    return entries


@dataclass(frozen=True)
class Button:
    """An action on a deployment the token may take."""

    action: str  # approve, reject, promote, pause, resume, abort, rollback
    label: str
    danger: bool
    explains: str  # what it does, on the confirmation page


BUTTONS: dict[str, tuple[Action, str, bool, str]] = {
    "approve": (Action.APPROVE, "Approve", False, "approve this deployment; it goes on"),
    "reject": (Action.APPROVE, "Reject", True, "reject it: it ends, nothing having changed"),
    "promote": (Action.DEPLOY, "Promote", False, "end the current pause or analysis and go on"),
    "pause": (Action.DEPLOY, "Pause", False, "pause the rollout where it is"),
    "resume": (Action.DEPLOY, "Resume", False, "finish the deployment from where it stopped"),
    "abort": (
        Action.DEPLOY,
        "Abort",
        True,
        "roll the deployment back to the releases that ran before it",
    ),
    "rollback": (
        Action.DEPLOY,
        "Roll back",
        True,
        "redeploy the previous successful release set",
    ),
}


def possible(
    deployment: DeploymentRecord, unfinished_id: str | None, latest_id: str | None
) -> list[str]:
    """The actions the deployment's state allows (whoever asks)."""
    status = deployment.status
    if status == AWAITING_APPROVAL:
        return ["approve", "reject"]
    if deployment.id == unfinished_id:
        if status == RUNNING:
            return ["promote", "pause", "abort"]
        if status == PAUSED:
            return ["promote", "resume", "abort"]
        return []
    if status == SUCCEEDED and unfinished_id is None and deployment.id == latest_id:
        return ["rollback"]
    return []


def buttons(
    token: TokenRecord,
    deployment: DeploymentRecord,
    unfinished_id: str | None,
    latest_id: str | None,
) -> list[Button]:
    """The buttons `token` sees on the deployment: the state allows them and its role does."""
    shown = []
    for action in possible(deployment, unfinished_id, latest_id):
        needs, label, danger, explains = BUTTONS[action]
        if refusal(token, needs, deployment.environment) is None:
            shown.append(Button(action, label, danger, explains))
    return shown
