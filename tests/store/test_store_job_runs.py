"""Runs of scheduled jobs in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.store import Store
from conveyor.store.records import JOB_RUNNING, JOB_SUCCEEDED, JobRunRecord

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


def started(store: Store, job: str, minute: int, environment: str = "staging") -> JobRunRecord:
    return store.add_job_run(
        JobRunRecord(
            id=0,
            environment=environment,
            job=job,
            status=JOB_RUNNING,
            trigger="schedule",
            started_at=T0 + timedelta(minutes=minute),
            scheduled_at=T0 + timedelta(minutes=minute),
            service="web",
            pid=1234,
        )
    )


def test_a_run_is_started_then_finished(store: Store) -> None:
    run = started(store, "clear-sessions", 0)
    assert run.id > 0 and run.status == JOB_RUNNING and run.finished_at is None
    store.finish_job_run(
        run.id,
        status=JOB_SUCCEEDED,
        finished_at=T0 + timedelta(seconds=2),
        exit_code=0,
        duration_s=2.0,
        output="Deleted 3 sessions",
    )
    done = store.get_job_run(run.id)
    assert done is not None
    assert (done.status, done.exit_code, done.output) == (JOB_SUCCEEDED, 0, "Deleted 3 sessions")
    assert done.finished_at == T0 + timedelta(seconds=2) and done.scheduled_at == T0
    assert store.get_job_run(run.id + 100) is None


def test_runs_are_listed_newest_first_by_job_and_status(store: Store) -> None:
    a1, b1, a2 = started(store, "a", 0), started(store, "b", 1), started(store, "a", 2)
    started(store, "a", 3, environment="production")
    store.finish_job_run(a1.id, status=JOB_SUCCEEDED)
    assert [r.id for r in store.list_job_runs("staging")] == [a2.id, b1.id, a1.id]
    assert [r.id for r in store.list_job_runs("staging", "a")] == [a2.id, a1.id]
    assert [r.id for r in store.list_job_runs("staging", "a", status=JOB_RUNNING)] == [a2.id]
    assert [r.id for r in store.list_job_runs("staging", limit=1)] == [a2.id]


def test_old_runs_of_a_job_are_forgotten(store: Store) -> None:
    mine = [started(store, "a", minute) for minute in range(5)]
    other = started(store, "b", 9)
    assert store.prune_job_runs("staging", "a", keep=2) == 3
    assert [r.id for r in store.list_job_runs("staging", "a")] == [mine[4].id, mine[3].id]
    assert [r.id for r in store.list_job_runs("staging", "b")] == [other.id]
    assert store.prune_job_runs("staging", "a", keep=2) == 0
