"""Environment policies as pure functions: deploy windows, freezes, branches, approvals.

No I/O and no clock: the caller passes `now`, the branches that contain a
commit, the approvals recorded. `conveyor.engine.policies` applies them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    """Deploys are allowed on `days` from `start` to `end` (local time in `timezone`).

    An `end` before `start` runs past midnight (22:00-02:00)."""

    days: tuple[str, ...]
    start: time
    end: time
    timezone: str = "UTC"

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        clock = local.time().replace(tzinfo=None)
        day = DAYS[local.weekday()]
        previous = DAYS[(local.weekday() - 1) % 7]
        if self.start <= self.end:
            return day in self.days and self.start <= clock < self.end
        # overnight: the part after midnight belongs to the day it started on
        return (day in self.days and clock >= self.start) or (
            previous in self.days and clock < self.end
        )

    def starts_after(self, moment: datetime, horizon_days: int = 15) -> Iterable[datetime]:
        """The window's openings after `moment`, in order (UTC)."""
        zone = ZoneInfo(self.timezone)
        local_day = moment.astimezone(zone).date()
        for offset in range(-1, horizon_days):
            day = local_day + timedelta(days=offset)
            if DAYS[day.weekday()] not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
            if opening > moment:
                yield opening


@dataclass(frozen=True)
class Freeze:
    """No deploys from `start` to `end`, both days included (in `timezone`)."""

    start: date
    end: date
    reason: str = ""
    timezone: str = "UTC"

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).date()
        return self.start <= local <= self.end

    def ends(self) -> datetime:
        """The first moment after the freeze."""
        after = datetime.combine(
            self.end + timedelta(days=1), time(), tzinfo=ZoneInfo(self.timezone)
        )
        return after.astimezone(UTC)


@dataclass(frozen=True)
class WindowVerdict:
    allowed: bool
    reason: str = ""  # why not
    next_allowed: datetime | None = None  # UTC; None: not within the horizon


def deploy_window(
    windows: Sequence[Window], freezes: Sequence[Freeze], now: datetime
) -> WindowVerdict:
    """Whether a deploy may start `now`, and if not, why and when it next may.

    >>> w = Window(("mon", "tue", "wed", "thu", "fri"), time(9), time(17), "Europe/Berlin")
    >>> saturday = datetime(2026, 12, 5, 12, tzinfo=UTC)
    >>> v = deploy_window([w], [], saturday)
    >>> v.allowed, v.next_allowed.isoformat()
    (False, '2026-12-07T08:00:00+00:00')
    """
    reasons = _blocked(windows, freezes, now)
    if not reasons:
        return WindowVerdict(True)
    return WindowVerdict(False, "; ".join(reasons), _next_allowed(windows, freezes, now))


def _blocked(windows: Sequence[Window], freezes: Sequence[Freeze], moment: datetime) -> list[str]:
    reasons = []
    for freeze in freezes:
        if freeze.contains(moment):
            why = f": {freeze.reason}" if freeze.reason else ""
            reasons.append(f"frozen from {freeze.start} to {freeze.end}{why}")
    if windows and not any(w.contains(moment) for w in windows):
        reasons.append(
            "outside the deploy windows (" + "; ".join(map(describe_window, windows)) + ")"
        )
    return reasons


def _next_allowed(
    windows: Sequence[Window], freezes: Sequence[Freeze], now: datetime
) -> datetime | None:
    # Candidates: every window opening and every freeze end within the horizon; the
    # first one at which nothing blocks is the answer.
    candidates = {f.ends() for f in freezes if f.ends() > now}
    for window in windows:
        candidates.update(window.starts_after(now))
    for candidate in sorted(candidates):
        if not _blocked(windows, freezes, candidate):
            return candidate
    return None


def describe_window(window: Window) -> str:
    days = ",".join(window.days) if len(window.days) < 7 else "every day"
    return f"{days} {window.start:%H:%M}-{window.end:%H:%M} {window.timezone}"


def branch_allowed(patterns: Sequence[str], branches: Iterable[str]) -> bool:
    """Whether one of the branches containing the commit matches a pattern (fnmatch).

    >>> branch_allowed(["main", "release/*"], ["release/2.1"])
    True
    >>> branch_allowed(["main"], ["feature/x"])
    False
    """
    return any(fnmatch.fnmatchcase(b, p) for b in branches for p in patterns)


# -- approvals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """An approval or rejection someone recorded."""

    user: str
    approve: bool
    at: datetime
    message: str = ""


@dataclass(frozen=True)
class ApprovalPolicy:
    required: int = 1
    approvers: tuple[str, ...] = ()  # people and "@group"s; empty: anyone
    prevent_self_approval: bool = True
    expires: float = 86400.0  # seconds the request stays open
    wait_timer: float = 0.0  # seconds between the request and the deploy, at least


@dataclass(frozen=True)
class ApprovalState:
    approved: bool  # enough approvals, and the wait timer has run
    rejected_by: Decision | None
    expired: bool
    approvers: tuple[str, ...]  # who approved (counted)
    waiting_until: datetime | None  # the wait timer's end while it runs
    summary: str


def eligible(policy: ApprovalPolicy, groups: Mapping[str, Sequence[str]], user: str) -> bool:
    """Whether `user` may approve (before the self-approval rule)."""
    if not policy.approvers:
        return True
    for entry in policy.approvers:
        if entry.startswith("@"):
            if user in groups.get(entry[1:], ()):
                return True
        elif entry == user:
            return True
    return False


def refusal(
    policy: ApprovalPolicy, groups: Mapping[str, Sequence[str]], deployer: str, user: str
) -> str | None:
    """Why `user` may not approve or reject a deployment started by `deployer`, or None."""
    if not eligible(policy, groups, user):
        return f"{user} is not an approver (approvers: {', '.join(policy.approvers)})"
    if policy.prevent_self_approval and user == deployer:
        return f"{user} started this deployment and may not approve it (prevent_self_approval)"
    return None


def approval_state(
    policy: ApprovalPolicy,
    groups: Mapping[str, Sequence[str]],
    deployer: str,
    requested_at: datetime,
    decisions: Sequence[Decision],
    now: datetime,
) -> ApprovalState:
    """Where an approval request stands. A rejection by an approver ends it; approvals
    count once per person, from eligible people only (never the deployer's own when
    self-approval is prevented).

    >>> p = ApprovalPolicy(required=2, approvers=("@sre",))
    >>> t = datetime(2026, 12, 1, tzinfo=UTC)
    >>> d = [Decision("bob", True, t), Decision("bob", True, t), Decision("eve", True, t)]
    >>> approval_state(p, {"sre": ["bob", "carol"]}, "alice", t, d, t).summary
    '1 of 2 approvals (bob)'
    """
    counted: list[str] = []
    for decision in decisions:
        if refusal(policy, groups, deployer, decision.user) is not None:
            continue
        if not decision.approve:
            why = f": {decision.message}" if decision.message else ""
            text = f"rejected by {decision.user}{why}"
            return ApprovalState(False, decision, False, tuple(counted), None, text)
        if decision.user not in counted:
            counted.append(decision.user)
    who = f" ({', '.join(counted)})" if counted else ""
    enough = len(counted) >= policy.required
    if not enough and (now - requested_at).total_seconds() >= policy.expires:
        return ApprovalState(
            False,
            None,
            True,
            tuple(counted),
            None,
            f"expired after {policy.expires:g} s with {len(counted)} of "
            f"{policy.required} approvals",
        )
    if not enough:
        return ApprovalState(
            False,
            None,
            False,
            tuple(counted),
            None,
            f"{len(counted)} of {policy.required} approvals{who}",
        )
    until = requested_at + timedelta(seconds=policy.wait_timer)
    if now < until:
        return ApprovalState(
            False,
            None,
            False,
            tuple(counted),
            until,
            f"approved{who}; wait timer until {until:%H:%M:%S} UTC",
        )
    return ApprovalState(True, None, False, tuple(counted), None, f"approved{who}")
