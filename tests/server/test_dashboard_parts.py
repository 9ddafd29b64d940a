"""The dashboard's pure parts: the chart's data from journaled measurements, its SVG,
the timeline's order and the buttons a deployment's state allows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.server.dashboard import chart
from conveyor.server.dashboard.journal import Journal, possible, timeline
from conveyor.store.records import (
    AWAITING_APPROVAL,
    FAILED,
    PAUSED,
    RUNNING,
    SUCCEEDED,
    DeploymentRecord,
    EventRecord,
    StepRecord,
)

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def measurement(
    seq: int,
    canary: tuple[int, int],
    stable: tuple[int, int],
    e: float | None,
    decision: str = "CONTINUE",
) -> dict[str, object]:
    checks = (
        []
        if e is None
        else [
            {
                "name": "error_rate_vs_stable",
                "statistic": "e_value",
                "value": e,
                "threshold": {"against": "stable", "reject_at": 40.0},
            },
        ]
    )
    return {
        "seq": seq,
        "time": 1000.0 + seq * 0.5,
        "releases": {
            "canary": {
                "requests": canary[0],
                "errors": canary[1],
                "latency_ms": {"offset": 5, "counts": [canary[0]]},
            },
            "baseline": {"requests": 0, "errors": 0},
            "stable": {"requests": stable[0], "errors": stable[1]},
        },
        "verdict": {"decision": decision, "message": "m", "checks": checks},
    }


def test_the_chart_shows_what_the_judges_saw_since_the_first_measurement() -> None:
    rows = [
        measurement(0, (50, 50), (80, 0), 1.0),  # the starting point: counted from here
        measurement(1, (150, 60), (180, 1), 3.0),
        measurement(2, (250, 70), (280, 2), 45.0, "FAIL"),
    ]
    data = chart.series("quick", 1, 2, None, rows)
    assert data.against == "stable" and data.decision == "FAIL"
    assert [p.elapsed for p in data.points] == [0.0, 0.5, 1.0]
    assert [p.canary_error_rate for p in data.points] == [None, 0.1, 0.1]
    assert [p.other_error_rate for p in data.points] == [None, 0.01, 0.01]
    assert [p.e_values["error_rate_vs_stable"] for p in data.points] == [1.0, 3.0, 45.0]
    assert data.reject_at == {"error_rate_vs_stable": 40.0}
    assert data.points[1].canary_p95_ms is not None and data.points[0].canary_p95_ms is None
    svg = chart.svg(data)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert 'data-points="3"' in svg and "fails at 40" in svg
    assert svg.count('data-series="error_rate:canary"') == 1  # one line, from the 2nd point


def test_a_chart_without_a_comparison_says_so_and_a_counter_reset_is_no_negative_rate() -> None:
    rows = [measurement(0, (500, 5), (500, 0), None), measurement(1, (20, 2), (30, 0), None)]
    data = chart.series("guard", 1, 1, {"comparative": None}, rows)
    assert data.points[1].canary_error_rate == 0.1  # the router restarted: 2 of 20 since
    svg = chart.svg(data)
    assert "No comparison configured" in svg and "e_value:" not in svg


def test_names_in_the_chart_are_escaped() -> None:
    rows = [measurement(0, (1, 0), (1, 0), 1.0)]
    data = chart.series("<script>", 1, 1, None, rows)
    assert "<script>" not in chart.svg(data)


def deployment(status: str, **changes: object) -> DeploymentRecord:
    record = DeploymentRecord(
        id="d1",
        environment="staging",
        kind="deploy",
        status=status,
        strategy="canary",
        releases={"api": "r2"},
        previous={"api": "r1"},
        user="ana",
        reason=None,
        started_at=T0,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "unfinished", "latest", "expected"),
    [
        (AWAITING_APPROVAL, "d1", "d1", ["approve", "reject"]),
        (RUNNING, "d1", "d1", ["promote", "pause", "abort"]),
        (PAUSED, "d1", "d1", ["promote", "resume", "abort"]),
        (SUCCEEDED, None, "d1", ["rollback"]),
        (SUCCEEDED, None, "d2", []),  # a newer deployment came after it
        (SUCCEEDED, "d2", "d2", []),  # another one is unfinished
        (FAILED, None, "d1", []),
    ],
)
def test_the_buttons_a_state_allows(
    status: str, unfinished: str | None, latest: str | None, expected: list[str]
) -> None:
    assert possible(deployment(status), unfinished, latest) == expected


def test_the_timeline_is_in_time_order_with_the_end_last() -> None:
    record = deployment(SUCCEEDED, finished_at=T0 + timedelta(seconds=9), error=None)
    journal = Journal(
        deployment=record,
        steps=[
            StepRecord(
                "d1",
                1,
                "start",
                "start api r2",
                "done",
                T0 + timedelta(seconds=1),
                T0 + timedelta(seconds=3),
            ),
            StepRecord(
                "d1",
                2,
                "pause",
                "pause 5s",
                "done",
                T0 + timedelta(seconds=5),
                T0 + timedelta(seconds=8),
            ),
        ],
        events=[EventRecord(7, T0 + timedelta(seconds=4), "promote", "promoted by bo")],
        approvals=[],
        analyses=[],
    )
    entries = timeline(journal)
    assert [e.key for e in entries] == ["start", "step-1", "event-7", "step-2", "end"]
    assert entries[1].detail == "2.0 s" and entries[-1].title == "succeeded after 9.0 s"
