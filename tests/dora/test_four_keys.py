"""DORA's four keys on a synthetic history whose answers are worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.dora import four_keys
from conveyor.store.records import (
    FAILED,
    REFUSED,
    ROLLED_BACK,
    SUCCEEDED,
    DeploymentRecord,
    ReleaseRecord,
)

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
SINCE, UNTIL = DAY0, DAY0 + timedelta(days=10)


def at(day: float, hours: float = 0, minutes: float = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hours, minutes=minutes)


# A linear history: c1 <- c2 <- c3 <- c4 <- c5.
COMMITS = [("c1", at(0)), ("c2", at(1)), ("c3", at(1, 12)), ("c4", at(3)), ("c5", at(5))]


def git_log(old: str | None, new: str) -> list[tuple[str, datetime]] | None:
    """`git log old..new` of the history above (a unit-test stand-in for git)."""
    names = [c for c, _ in COMMITS]
    end = names.index(new) + 1
    start = names.index(old) + 1 if old else end - 1
    return list(reversed(COMMITS[start:end]))


def release(rid: str, commit: str) -> ReleaseRecord:
    when = dict(COMMITS)[commit]
    return ReleaseRecord(rid, "web", "/r", "d", "s", when, "me", commit, when)


RELEASES = {
    ("web", r.id): r
    for r in (release("r1", "c1"), release("r2", "c3"), release("r3", "c4"), release("r4", "c5"))
}


def deployment(
    did: str,
    status: str,
    new: str,
    old: str | None,
    start: datetime,
    minutes: float,
    *,
    kind: str = "deploy",
    environment: str = "production",
) -> DeploymentRecord:
    return DeploymentRecord(
        did,
        environment,
        kind,
        status,
        "rolling",
        {"web": new},
        {"web": old} if old else {},
        "me",
        None,
        start,
        start + timedelta(minutes=minutes),
    )


HISTORY = [
    deployment("before", SUCCEEDED, "r1", None, at(-3), 5),  # before the window
    deployment("d1", SUCCEEDED, "r1", None, at(0, 1), 10),
    deployment("d2", SUCCEEDED, "r2", "r1", at(1, 13), 5),
    deployment("d3", ROLLED_BACK, "r3", "r2", at(3, 1), 2),
    deployment("d4", SUCCEEDED, "r3", "r2", at(3, 2), 3),
    deployment("d5", SUCCEEDED, "r2", "r3", at(3, 3), 1, kind="rollback"),
    deployment("d6", FAILED, "r4", "r2", at(5, 1), 5),
    deployment("d7", SUCCEEDED, "r4", "r2", at(5, 2), 10),
    deployment("d8", REFUSED, "r4", "r4", at(6), 1),  # changed nothing
    deployment("s1", FAILED, "r4", "r1", at(2), 1, environment="staging"),
]


def test_the_four_keys_of_a_known_history() -> None:
    report = four_keys("production", HISTORY, RELEASES, git_log, SINCE, UNTIL)
    data = report.to_json()

    # d1, d2, d4, d7 succeeded in 10 days.
    assert data["deployment_frequency"] == {
        "deployments": 4,
        "per_day": 0.4,
        "per_week": 2.8,
        "band": "high",
    }
    # c1 1h10m, c2 13h05m, c3 1h05m (d2 brought c2 and c3), c4 2h03m, c5 2h10m (d7 brought
    # c4 and c5 over r2, but c4 reached production with d4 already).
    assert sorted(report.lead_times) == [3900, 4200, 7380, 7800, 47100]
    assert data["lead_time"] == {"median_seconds": 7380, "commits": 5, "band": "elite"}
    # Of six changes (d1 d2 d3 d4 d6 d7), d3 rolled back, d4 undone by `rollback` (d5),
    # d6 failed.
    assert data["change_failure_rate"] == {
        "failed": 3,
        "deployments": 6,
        "rate": 0.5,
        "band": "low",
    }
    # d3: its 2 minutes; d4: from its end (2:03) to d5's end (3:01); d6: from its start
    # (1:00) to d7's end (2:10). The median, 58 min, is under an hour: elite.
    assert sorted(report.restore_times) == [120, 3480, 4200]
    assert data["time_to_restore"] == {
        "median_seconds": 3480,
        "restored": 3,
        "open": 0,
        "band": "elite",
    }


def test_a_failure_not_yet_restored_is_open_and_an_empty_window_has_no_bands() -> None:
    history = [*HISTORY[:7]]  # up to d6, which failed and nothing fixed yet
    report = four_keys("production", history, RELEASES, git_log, SINCE, UNTIL)
    assert report.open_failures == 1 and report.failures == 3
    assert report.to_json()["time_to_restore"]["restored"] == 2

    empty = four_keys("production", HISTORY, RELEASES, git_log, at(20), at(30))
    data = empty.to_json()
    assert data["deployment_frequency"]["deployments"] == 0
    assert data["deployment_frequency"]["band"] is None
    assert data["lead_time"] == {"median_seconds": None, "commits": 0, "band": None}
    assert data["change_failure_rate"]["rate"] is None


def test_without_git_a_release_counts_its_own_commit() -> None:
    report = four_keys("production", HISTORY, RELEASES, lambda old, new: None, SINCE, UNTIL)
    # d1 c1 1h10m, d2 c3 1h05m, d4 c4 2h03m, d7 c5 2h10m: c2 is not known without git.
    assert sorted(report.lead_times) == [3900, 4200, 7380, 7800]


def test_a_deployment_followed_by_a_fired_alert_failed() -> None:
    # d1 (ends 0:01:10) then an alert at day 0 5h, resolved at 5h20m, before d2 (1:13):
    # d1 failed, restored in 20 minutes. An alert after d7 (ends 5:02:10) that still
    # fires: d7 failed, open. An alert before d1 ended, or after a failure already
    # counted (d3 rolled back), adds nothing.
    alerts = [
        (at(0, 1, 5), at(0, 1, 8)),  # during d1: not after its end
        (at(0, 5), at(0, 5, 20)),
        (at(0, 6), at(0, 7)),  # a second alert after d1: still one failure
        (at(3, 1, 1), at(3, 1, 30)),  # during d3, which rolled back anyway
        (at(5, 3), None),
    ]
    report = four_keys("production", HISTORY, RELEASES, git_log, SINCE, UNTIL, alerts)
    data = report.to_json()
    # d3, d4 (undone by rollback), d6 as before, and now d1 and d7.
    assert data["change_failure_rate"]["failed"] == 5
    assert data["change_failure_rate"]["deployments"] == 6
    assert sorted(report.restore_times) == [120, 1200, 3480, 4200]
    assert report.open_failures == 1


def test_an_alert_resolved_by_the_next_deployment_ends_with_it() -> None:
    # d2 (ends 1:13:05) then an alert at 2 days that is never resolved; d3 starts at
    # 3:01 and rolls back: the alert's failure of d2 is not restored by it (d3 did not
    # succeed), and stays open.
    alerts = [(at(2), None)]
    report = four_keys("production", HISTORY, RELEASES, git_log, SINCE, UNTIL, alerts)
    assert report.failures == 4
    assert report.open_failures == 1
    # Followed by a successful change instead (d4 after d3 is d4: use d1 -> d2).
    alerts = [(at(1), None)]
    report = four_keys("production", HISTORY, RELEASES, git_log, SINCE, UNTIL, alerts)
    # d1 failed at the alert (day 1), restored by d2's end (1:13:05): 13h05m.
    assert 13 * 3600 + 300 in report.restore_times
    assert report.open_failures == 0


def test_alerts_are_paired_from_the_events() -> None:
    from conveyor.dora import alerts_from_events
    from conveyor.store.records import EventRecord

    def event(i: int, kind: str, name: str, when: datetime) -> EventRecord:
        return EventRecord(i, when, kind, "", "production", None, {"alert": name})

    events = [
        event(4, "alert_resolved", "errors", at(1, 2)),
        event(1, "alert_firing", "errors", at(1)),
        event(2, "alert_firing", "slow", at(1, 1)),
        event(3, "alert_resolved", "ghost", at(1, 1)),  # never fired: ignored
    ]
    assert alerts_from_events(events) == [(at(1), at(1, 2)), (at(1, 1), None)]
