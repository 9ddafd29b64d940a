"""Table tests of the pure policies: deploy windows, freezes, branches, approvals."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from conveyor.policies import (
    ApprovalPolicy,
    Decision,
    Freeze,
    Window,
    approval_state,
    branch_allowed,
    deploy_window,
    refusal,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
OFFICE = Window(WEEKDAYS, time(9), time(17), "Europe/Berlin")  # UTC+1 in winter
NIGHT = Window(("sat",), time(22), time(2), "UTC")  # past midnight
HOLIDAYS = Freeze(date(2026, 12, 24), date(2026, 12, 26), "holidays", "Europe/Berlin")


def utc(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("windows", "freezes", "now", "allowed", "next_allowed", "reason"),
    [
        # Tuesday 1 December 2026, 09:30 in Berlin
        ([OFFICE], [], utc(1, 8, 30), True, None, ""),
        # 07:59 UTC = 08:59 in Berlin: opens a minute later
        ([OFFICE], [], utc(1, 7, 59), False, utc(1, 8), "outside the deploy windows"),
        # Friday 16:00 UTC = 17:00 in Berlin: closed until Monday 09:00 Berlin
        ([OFFICE], [], utc(4, 16), False, utc(7, 8), "outside the deploy windows"),
        # Saturday night window, after midnight on Sunday
        ([NIGHT], [], utc(6, 1, 30), True, None, ""),
        ([NIGHT], [], utc(6, 2), False, utc(12, 22), "outside"),
        # Christmas Eve, a Thursday, in office hours: frozen until the 27th (a Sunday),
        # then the next office window is Monday 28th 09:00 Berlin
        (
            [OFFICE],
            [HOLIDAYS],
            utc(24, 10),
            False,
            utc(28, 8),
            "frozen from 2026-12-24 to 2026-12-26: holidays",
        ),
        # a freeze alone: open again at midnight after it (Berlin time)
        ([], [HOLIDAYS], utc(25, 12), False, utc(26, 23), "frozen"),
        ([], [HOLIDAYS], utc(27, 12), True, None, ""),
    ],
)
def test_deploy_windows_and_freezes(
    windows: list[Window],
    freezes: list[Freeze],
    now: datetime,
    allowed: bool,
    next_allowed: datetime | None,
    reason: str,
) -> None:
    verdict = deploy_window(windows, freezes, now)
    assert verdict.allowed is allowed
    assert verdict.next_allowed == next_allowed
    assert reason in verdict.reason


def test_the_next_time_respects_both_windows_and_freezes_in_their_zones() -> None:
    tokyo = Window(WEEKDAYS, time(10), time(11), "Asia/Tokyo")  # 01:00-02:00 UTC
    verdict = deploy_window([OFFICE, tokyo], [], utc(1, 17))
    assert verdict.next_allowed == utc(2, 1)  # Tokyo's opens first
    assert "Asia/Tokyo" in verdict.reason and "Europe/Berlin" in verdict.reason


@pytest.mark.parametrize(
    ("patterns", "branches", "allowed"),
    [
        (["main"], ["main"], True),
        (["main"], ["feature/login"], False),
        (["main", "release/*"], ["release/2.1"], True),
        (["release/*"], ["release"], False),
        (["main"], [], False),
        (["hotfix-?"], ["hotfix-1", "main"], True),
    ],
)
def test_branch_patterns(patterns: list[str], branches: list[str], allowed: bool) -> None:
    assert branch_allowed(patterns, branches) is allowed


T0 = utc(1, 9)
GROUPS = {"sre": ["bob@x", "carol@x"]}


def decisions(*entries: tuple[str, bool]) -> list[Decision]:
    return [
        Decision(user, approve, T0 + timedelta(minutes=n))
        for n, (user, approve) in enumerate(entries)
    ]


@pytest.mark.parametrize(
    ("policy", "given", "now", "approved", "summary"),
    [
        (ApprovalPolicy(), [], T0, False, "0 of 1 approvals"),
        (ApprovalPolicy(), decisions(("bob@x", True)), T0, True, "approved (bob@x)"),
        # self-approval does not count
        (ApprovalPolicy(), decisions(("alice@x", True)), T0, False, "0 of 1 approvals"),
        (
            ApprovalPolicy(prevent_self_approval=False),
            decisions(("alice@x", True)),
            T0,
            True,
            "approved (alice@x)",
        ),
        # groups, and one approval per person
        (
            ApprovalPolicy(required=2, approvers=("@sre",)),
            decisions(("bob@x", True), ("bob@x", True), ("mallory@x", True)),
            T0,
            False,
            "1 of 2 approvals (bob@x)",
        ),
        (
            ApprovalPolicy(required=2, approvers=("@sre", "dave@x")),
            decisions(("bob@x", True), ("dave@x", True)),
            T0,
            True,
            "approved (bob@x, dave@x)",
        ),
        # a rejection by an approver ends it; one by someone else does not count
        (ApprovalPolicy(), decisions(("eve@x", False)), T0, False, "rejected by eve@x"),
        (
            ApprovalPolicy(approvers=("@sre",)),
            decisions(("eve@x", False)),
            T0,
            False,
            "0 of 1 approvals",
        ),
        # expiry, and the wait timer
        (
            ApprovalPolicy(expires=3600),
            [],
            T0 + timedelta(hours=1),
            False,
            "expired after 3600 s with 0 of 1 approvals",
        ),
        (
            ApprovalPolicy(wait_timer=600),
            decisions(("bob@x", True)),
            T0 + timedelta(minutes=5),
            False,
            "approved (bob@x); wait timer until 09:10:00 UTC",
        ),
        (
            ApprovalPolicy(wait_timer=600),
            decisions(("bob@x", True)),
            T0 + timedelta(minutes=10),
            True,
            "approved (bob@x)",
        ),
    ],
)
def test_approvals(
    policy: ApprovalPolicy, given: list[Decision], now: datetime, approved: bool, summary: str
) -> None:
    state = approval_state(policy, GROUPS, "alice@x", T0, given, now)
    assert state.approved is approved
    assert state.summary == summary


def test_who_may_decide() -> None:
    policy = ApprovalPolicy(approvers=("@sre",))
    assert refusal(policy, GROUPS, "alice@x", "bob@x") is None
    assert "is not an approver" in (refusal(policy, GROUPS, "alice@x", "eve@x") or "")
    sre_deployer = refusal(policy, GROUPS, "bob@x", "bob@x") or ""
    assert "may not approve it (prevent_self_approval)" in sre_deployer
