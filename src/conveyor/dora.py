"""DORA's four keys, computed from what Conveyor records: the deployments of an
environment and the commits its releases were built from. Pure: the caller passes
the records and a way to list commits (`conveyor.git.commits_between`).

Definitions (those of the DORA research, in the form Google's Four Keys computes
them; the bands are the 2023 State of DevOps report's elite/high/medium/low):

* **Deployment frequency**: deployments that succeeded in the window, per day and
  per week.
* **Lead time for changes**: for each commit that reached the environment in a
  successful deployment of the window, the time from its commit (committer time)
  to the end of that deployment; the median. A deployment brings the commits its
  releases have that the releases it replaced had not (`old..new` per service).
* **Change failure rate**: of the deployments that changed the environment (not
  refused or rejected ones, which changed nothing), those that failed: rolled back
  by Conveyor, aborted, failed, or succeeded and then undone by `conveyor rollback`
  or followed by a fired alert (`monitors:`) before the next change.
* **Time to restore**: for each failure, from when the bad change could first serve
  (the deployment's start; for one undone by `conveyor rollback`, its end; for one
  followed by an alert, the alert's firing) to when the environment was restored (the
  automatic rollback's end, the `rollback`'s end, the alert's resolution or the end of
  the next change that succeeded, whichever came first, or for a deployment that could
  not be rolled back, the next deployment or rollback that succeeded); the median. A
  failure not yet restored is counted as open.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from conveyor.store.records import (
    ABORTED,
    FAILED,
    ROLLED_BACK,
    SUCCEEDED,
    DeploymentRecord,
    ReleaseRecord,
)

__all__ = ["Alert", "Band", "DoraReport", "alerts_from_events", "four_keys"]

# An alert of monitors: when it fired, and when it resolved (None: it still fires).
Alert = tuple[datetime, datetime | None]
# (the commit before, the commit after) -> the commits after has, newest first; None: unknown
CommitLister = Callable[[str | None, str], list[tuple[str, datetime]] | None]
Band = str  # "elite" | "high" | "medium" | "low"

DAY = 86400.0
CHANGED = (SUCCEEDED, ROLLED_BACK, ABORTED, FAILED)  # ended, and changed what serves
FAILURES = (ROLLED_BACK, ABORTED, FAILED)


@dataclass(frozen=True)
class DoraReport:
    environment: str
    since: datetime
    until: datetime
    deployments: int  # succeeded
    per_day: float
    frequency_band: Band | None
    lead_times: tuple[float, ...]  # seconds, one per commit
    changes: int
    failures: int
    restore_times: tuple[float, ...]  # seconds, one per restored failure
    open_failures: int

    @property
    def lead_time(self) -> float | None:
        return statistics.median(self.lead_times) if self.lead_times else None

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.changes if self.changes else None

    @property
    def time_to_restore(self) -> float | None:
        return statistics.median(self.restore_times) if self.restore_times else None

    def to_json(self) -> dict[str, Any]:
        lead, rate, restore = self.lead_time, self.failure_rate, self.time_to_restore
        return {
            "environment": self.environment,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "deployment_frequency": {
                "deployments": self.deployments,
                "per_day": round(self.per_day, 4),
                "per_week": round(self.per_day * 7, 4),
                "band": self.frequency_band,
            },
            "lead_time": {
                "median_seconds": None if lead is None else round(lead, 3),
                "commits": len(self.lead_times),
                "band": _band(lead, (DAY, 7 * DAY, 30 * DAY)),
            },
            "change_failure_rate": {
                "failed": self.failures,
                "deployments": self.changes,
                "rate": None if rate is None else round(rate, 4),
                "band": _band(rate, (0.05, 0.10, 0.15)),
            },
            "time_to_restore": {
                "median_seconds": None if restore is None else round(restore, 3),
                "restored": len(self.restore_times),
                "open": self.open_failures,
                "band": _band(restore, (3600.0, DAY, 7 * DAY)),
            },
        }


def four_keys(
    environment: str,
    deployments: Sequence[DeploymentRecord],
    releases: Mapping[tuple[str, str], ReleaseRecord],
    commits: CommitLister,
    since: datetime,
    until: datetime,
    alerts: Sequence[Alert] = (),
) -> DoraReport:
    """The four keys of `environment` over [since, until] from its `deployments` (any
    order, any environment: others are left out), the `releases` they name and the
    `alerts` of its monitors that fired."""
    ordered = sorted(
        (d for d in deployments if d.environment == environment and d.finished_at is not None),
        key=lambda d: (_utc(d.started_at), _utc(_finished(d))),
    )
    within = [d for d in ordered if since <= _utc(_finished(d)) <= until]
    changes = [d for d in within if d.kind == "deploy" and d.status in CHANGED]
    succeeded = [d for d in changes if d.status == SUCCEEDED]
    days = max((until - since).total_seconds() / DAY, 1e-9)
    per_day = len(succeeded) / days

    failures = 0
    restore_times: list[float] = []
    open_failures = 0
    for change in changes:
        restored = _restored(change, ordered, alerts)
        if restored is None:
            continue  # not a failure
        failures += 1
        began, ended = restored
        if ended is None:
            open_failures += 1
        else:
            restore_times.append(max((ended - began).total_seconds(), 0.0))

    return DoraReport(
        environment=environment,
        since=since,
        until=until,
        deployments=len(succeeded),
        per_day=per_day,
        frequency_band=_frequency_band(per_day) if succeeded else None,
        lead_times=tuple(_lead_times(succeeded, releases, commits)),
        changes=len(changes),
        failures=failures,
        restore_times=tuple(restore_times),
        open_failures=open_failures,
    )


def _restored(
    change: DeploymentRecord, ordered: Sequence[DeploymentRecord], alerts: Sequence[Alert] = ()
) -> tuple[datetime, datetime | None] | None:
    """(when the failure began, when it was restored or None) of a failed change; None
    when `change` did not fail."""
    later = [
        d
        for d in ordered
        if _utc(d.started_at) >= _utc(change.started_at) and d is not change and d.status in CHANGED
    ]
    if change.status in (ROLLED_BACK, ABORTED):
        return _utc(change.started_at), _utc(_finished(change))
    if change.status == FAILED:
        fixed = next((d for d in later if d.status == SUCCEEDED), None)
        return _utc(change.started_at), _utc(_finished(fixed)) if fixed else None
    following = next(iter(later), None)  # the next change after a success
    if following is not None and following.kind == "rollback" and following.status == SUCCEEDED:
        return _utc(_finished(change)), _utc(_finished(following))
    return _alerted(change, following, alerts)


def _alerted(
    change: DeploymentRecord, following: DeploymentRecord | None, alerts: Sequence[Alert]
) -> tuple[datetime, datetime | None] | None:
    """(the first alert's firing, when it was over) when an alert fired after `change`
    succeeded and before the next change started; None when none did."""
    end = _utc(_finished(change))
    before = _utc(following.started_at) if following is not None else None
    fired = sorted(
        (_utc(at), None if over is None else _utc(over))
        for at, over in alerts
        if end <= _utc(at) and (before is None or _utc(at) < before)
    )
    if not fired:
        return None
    began, resolved = fired[0]
    ends = [moment for moment in (resolved,) if moment is not None]
    if following is not None and following.status == SUCCEEDED:
        ends.append(_utc(_finished(following)))
    return began, min(ends) if ends else None


def _lead_times(
    succeeded: Sequence[DeploymentRecord],
    releases: Mapping[tuple[str, str], ReleaseRecord],
    commits: CommitLister,
) -> list[float]:
    seen: set[str] = set()
    times: list[float] = []
    for deployment in sorted(succeeded, key=lambda d: _utc(_finished(d))):
        done = _utc(_finished(deployment))
        for service, release_id in deployment.releases.items():
            before = deployment.previous.get(service)
            if release_id == before:
                continue
            new = releases.get((service, release_id))
            if new is None or new.git_commit is None:
                continue
            old = releases.get((service, before)) if before else None
            listed = commits(old.git_commit if old else None, new.git_commit)
            if listed is None:  # git cannot say: the release's own commit
                listed = [(new.git_commit, new.git_commit_time)] if new.git_commit_time else []
            for commit, when in listed:
                if commit not in seen:
                    seen.add(commit)
                    times.append(max((done - _utc(when)).total_seconds(), 0.0))
    return times


def _frequency_band(per_day: float) -> Band:
    """Daily or more: elite; weekly or more: high; monthly or more: medium; else low."""
    if per_day >= 1:
        return "elite"
    if per_day * 7 >= 1:
        return "high"
    if per_day * 30 >= 1:
        return "medium"
    return "low"


def _band(value: float | None, limits: tuple[float, float, float]) -> Band | None:
    """Below the first limit (or equal, for rates): elite, then high, medium, low."""
    if value is None:
        return None
    for band, limit in zip(("elite", "high", "medium"), limits, strict=True):
        if value <= limit:
            return band
    return "low"


def _finished(deployment: DeploymentRecord) -> datetime:
    assert deployment.finished_at is not None
    return deployment.finished_at


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def alerts_from_events(events: Sequence[Any]) -> list[Alert]:
    """The alerts that fired, from the environment's `alert_firing` and `alert_resolved`
    events (any order): each firing paired with the next resolution of the same alert."""
    spans: list[Alert] = []
    open_since: dict[str, datetime] = {}
    for event in sorted(events, key=lambda e: (_utc(e.time), e.id)):
        name = str(event.data.get("alert", ""))
        if event.kind == "alert_firing" and name not in open_since:
            open_since[name] = _utc(event.time)
        elif event.kind == "alert_resolved" and name in open_since:
            spans.append((open_since.pop(name), _utc(event.time)))
    spans.extend((began, None) for began in open_since.values())
    return sorted(spans, key=lambda span: span[0])
