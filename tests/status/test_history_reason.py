"""`conveyor history` keeps its REASON column to one line; `explain` has the whole error."""

from __future__ import annotations

from conveyor.store import open_store
from conveyor.store.records import ROLLED_BACK

from .conftest import StatusProject

DEPLOYMENT = "20260501-120000-aaaa"
LOG = [f"2026-05-01 12:00:{n:02} api-1 | Traceback line {n} of the failing app" for n in range(20)]
ERROR = (
    "step 4 (wait until staging-api-aaaa-1 healthy) failed: staging-api-aaaa-1 never became "
    "healthy within 60s; last check: GET /health -> connection refused; last 20 log lines:\n"
    + "\n".join(LOG)
)


def test_history_reason_is_one_short_line_pointing_at_explain(project: StatusProject) -> None:
    with open_store(f"sqlite:///{project.paths.state_db}") as store:
        store.update_deployment(DEPLOYMENT, status=ROLLED_BACK, error=ERROR, finished=True)

    shown = project.cli("history", "staging")
    assert shown.returncode == 0, shown.stderr
    row = [line for line in shown.stdout.splitlines() if line.startswith(DEPLOYMENT)]
    assert len(row) == 1, shown.stdout  # the error's 20 log lines are not in the table
    assert "Traceback line" not in shown.stdout
    reason = row[0][row[0].index("step 4") :].rstrip()
    assert len(reason) <= 100, reason
    assert reason.startswith("step 4 (wait until staging-api-aaaa-1 healthy) failed")
    assert reason.endswith(f"… conveyor explain {DEPLOYMENT}")

    detail = project.cli("explain", DEPLOYMENT)
    assert detail.returncode == 0, detail.stderr
    assert "Traceback line 19 of the failing app" in detail.stdout  # all of it is there
    history = project.cli("history", "staging", "--json")
    assert ERROR in history.stdout.replace("\\n", "\n")


def test_a_short_reason_is_shown_as_it_is(project: StatusProject) -> None:
    with open_store(f"sqlite:///{project.paths.state_db}") as store:
        store.update_deployment(DEPLOYMENT, status=ROLLED_BACK, error="smoke failed", finished=True)
    shown = project.cli("history", "staging")
    row = next(line for line in shown.stdout.splitlines() if line.startswith(DEPLOYMENT))
    assert row.rstrip().endswith("smoke failed")
