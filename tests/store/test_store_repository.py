"""Store behaviour, against SQLite and PostgreSQL (see conftest.store_url)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from conveyor.errors import StateError
from conveyor.store import Store, open_store
from conveyor.store.records import (
    FAILED,
    PENDING,
    ROLLED_BACK,
    RUNNING,
    STEP_DONE,
    STEP_FAILED,
    STEP_RUNNING,
    SUCCEEDED,
    DeploymentRecord,
    InstanceRecord,
    ReleaseRecord,
)

T0 = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def release(
    rid: str,
    service: str = "web",
    created_at: datetime = T0,
    source_digest: str = "src-1",
    **extra: object,
) -> ReleaseRecord:
    return ReleaseRecord(
        id=rid,
        service=service,
        path=f"/srv/releases/{service}/{rid}",
        digest=f"sha256:{rid}",
        source_digest=source_digest,
        created_at=created_at,
        built_by="alice",
        **extra,  # type: ignore[arg-type]
    )


def deployment(
    did: str,
    environment: str = "staging",
    status: str = RUNNING,
    started_at: datetime = T0,
) -> DeploymentRecord:
    return DeploymentRecord(
        id=did,
        environment=environment,
        kind="deploy",
        status=status,
        strategy="rolling",
        releases={"web": "r2", "api": "r7"},
        previous={"web": "r1"},
        user="alice",
        reason="ship it",
        started_at=started_at,
    )


def instance(name: str, created_at: datetime = T0, **fields: object) -> InstanceRecord:
    values: dict[str, object] = {
        "name": name,
        "environment": "staging",
        "service": "web",
        "release_id": "r1",
        "port": 8001,
        "host": "local",
        "address": "127.0.0.1:8001",
        "state": "starting",
        "created_at": created_at,
    }
    values.update(fields)
    return InstanceRecord(**values)  # type: ignore[arg-type]


# -- releases ---------------------------------------------------------------


def test_release_round_trip(store: Store) -> None:
    r = release(
        "r1",
        git_commit="abc123",
        git_commit_time=T0 - timedelta(hours=1),
        build_log="npm ci\nnpm run build\n",
        manifest={"files": 42, "nested": {"a": [1, 2, 3]}, "unicode": "déployé ✓"},
    )
    store.add_release(r)
    assert store.get_release("web", "r1") == r
    assert store.get_release("web", "nope") is None
    assert store.get_release("api", "r1") is None


def test_same_release_id_in_two_services(store: Store) -> None:
    store.add_release(release("r1", service="web"))
    store.add_release(release("r1", service="api"))
    assert {r.service for r in store.list_releases()} == {"web", "api"}


def test_duplicate_release_is_refused(store: Store) -> None:
    store.add_release(release("r1"))
    with pytest.raises(StateError, match="release r1 of service web is already recorded"):
        store.add_release(release("r1"))


def test_list_releases_newest_first_ties_by_insertion(store: Store) -> None:
    store.add_release(release("old", created_at=T0 - timedelta(days=1)))
    for rid in ("tie-a", "tie-b", "tie-c"):
        store.add_release(release(rid, created_at=T0))
    store.add_release(release("new", created_at=T0 + timedelta(seconds=1)))
    store.add_release(release("other", service="api", created_at=T0 + timedelta(days=1)))

    assert [r.id for r in store.list_releases("web")] == ["new", "tie-c", "tie-b", "tie-a", "old"]
    assert store.list_releases()[0].id == "other"
    assert len(store.list_releases()) == 6
    assert store.list_releases("nobody") == []


def test_find_release_by_source_returns_newest(store: Store) -> None:
    store.add_release(release("r1", source_digest="s", created_at=T0))
    store.add_release(release("r2", source_digest="s", created_at=T0 + timedelta(minutes=1)))
    store.add_release(release("r3", source_digest="other", created_at=T0 + timedelta(minutes=2)))
    store.add_release(release("r4", service="api", source_digest="s", created_at=T0))
    found = store.find_release_by_source("web", "s")
    assert found is not None and found.id == "r2"
    assert store.find_release_by_source("web", "missing") is None


def test_delete_release(store: Store) -> None:
    store.add_release(release("r1"))
    assert store.delete_release("web", "r1") is True
    assert store.delete_release("web", "r1") is False
    assert store.get_release("web", "r1") is None


# -- time zones ---------------------------------------------------------------


def test_datetimes_round_trip_as_aware_utc(store: Store) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2026, 5, 1, 17, 30, 0, 654321, tzinfo=india)
    store.add_release(release("r1", created_at=local, git_commit_time=local))
    got = store.get_release("web", "r1")
    assert got is not None
    for value in (got.created_at, got.git_commit_time):
        assert value is not None
        assert value.tzinfo is UTC
        assert value == local  # same instant
        assert value.replace(tzinfo=None) == datetime(2026, 5, 1, 12, 0, 0, 654321)

    event = store.add_event("note", "hello")
    assert event.time.tzinfo is UTC
    assert abs(event.time - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.add_release(release("r1", created_at=datetime(2026, 5, 1, 12, 0)))
    assert store.list_releases() == []


def test_time_ordering_is_by_instant_not_local_text(store: Store) -> None:
    # 13:00+02:00 is 11:00Z: older than 12:00Z although its local text is later.
    plus_two = timezone(timedelta(hours=2))
    store.add_release(release("early", created_at=datetime(2026, 5, 1, 13, 0, tzinfo=plus_two)))
    store.add_release(release("late", created_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC)))
    assert [r.id for r in store.list_releases()] == ["late", "early"]


# -- deployments ------------------------------------------------------------


def test_deployment_round_trip_and_update(store: Store) -> None:
    d = deployment("d1")
    store.create_deployment(d)
    assert store.get_deployment("d1") == d
    assert store.get_deployment("nope") is None

    plan: list[dict[str, Any]] = [
        {"kind": "start", "service": "web", "n": 1},
        {"kind": "shift", "weights": [0, 100]},
    ]
    updated = store.update_deployment("d1", plan=plan)
    assert updated.plan == plan and updated.status == RUNNING and updated.finished_at is None

    before = datetime.now(UTC)
    done = store.update_deployment("d1", status=ROLLED_BACK, error="health check", finished=True)
    assert done.status == ROLLED_BACK and done.error == "health check"
    assert done.finished_at is not None and done.finished_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= done.finished_at <= datetime.now(UTC)
    assert store.get_deployment("d1") == done


def test_update_unknown_deployment(store: Store) -> None:
    with pytest.raises(StateError, match="deployment ghost is not in the state store"):
        store.update_deployment("ghost", status=FAILED)


def test_duplicate_deployment_is_refused(store: Store) -> None:
    store.create_deployment(deployment("d1"))
    with pytest.raises(StateError, match="deployment d1 is already recorded"):
        store.create_deployment(deployment("d1"))


def test_list_deployments_newest_first(store: Store) -> None:
    store.create_deployment(deployment("a", started_at=T0))
    store.create_deployment(deployment("b", started_at=T0 + timedelta(minutes=1)))
    store.create_deployment(deployment("c", started_at=T0 + timedelta(minutes=1)))
    store.create_deployment(deployment("p", environment="production", started_at=T0))
    assert [d.id for d in store.list_deployments("staging")] == ["c", "b", "a"]
    assert [d.id for d in store.list_deployments("staging", limit=2)] == ["c", "b"]
    assert [d.id for d in store.list_deployments()] == ["c", "b", "p", "a"]
    assert store.list_deployments("dev") == []


def test_unfinished_deployment(store: Store) -> None:
    assert store.unfinished_deployment("staging") is None
    store.create_deployment(deployment("a", status=SUCCEEDED, started_at=T0))
    store.create_deployment(deployment("b", status=PENDING, started_at=T0 + timedelta(minutes=1)))
    store.create_deployment(deployment("p", environment="production", status=RUNNING))
    found = store.unfinished_deployment("staging")
    assert found is not None and found.id == "b"
    store.update_deployment("b", status=FAILED, finished=True)
    assert store.unfinished_deployment("staging") is None


def test_last_successful(store: Store) -> None:
    assert store.last_successful("staging") is None
    store.create_deployment(deployment("s1", status=SUCCEEDED, started_at=T0))
    store.create_deployment(deployment("s2", status=SUCCEEDED, started_at=T0 + timedelta(hours=1)))
    store.create_deployment(deployment("f3", status=FAILED, started_at=T0 + timedelta(hours=2)))
    store.create_deployment(
        deployment(
            "p", environment="production", status=SUCCEEDED, started_at=T0 + timedelta(days=1)
        )
    )
    last = store.last_successful("staging")
    assert last is not None and last.id == "s2"
    before = store.last_successful("staging", before_id="s2")
    assert before is not None and before.id == "s1"
    assert store.last_successful("staging", before_id="s1") is None
    with pytest.raises(StateError, match="deployment ghost"):
        store.last_successful("staging", before_id="ghost")


def test_last_successful_before_a_deployment_with_the_same_start_time(store: Store) -> None:
    store.create_deployment(deployment("s1", status=SUCCEEDED, started_at=T0))
    store.create_deployment(deployment("s2", status=SUCCEEDED, started_at=T0))
    before = store.last_successful("staging", before_id="s2")
    assert before is not None and before.id == "s1"


# -- journal ------------------------------------------------------------------


def test_journal_steps_by_index(store: Store) -> None:
    store.create_deployment(deployment("d1"))
    for index in (2, 0, 1):
        step = store.step_started("d1", index, "start", f"start step {index}")
        assert step.status == STEP_RUNNING and step.attempt == 1 and step.finished_at is None
    store.step_finished("d1", 0, STEP_DONE)
    store.step_finished("d1", 1, STEP_FAILED, error="boom")
    steps = store.list_steps("d1")
    assert [s.index for s in steps] == [0, 1, 2]
    assert [s.status for s in steps] == [STEP_DONE, STEP_FAILED, STEP_RUNNING]
    assert steps[1].error == "boom"
    assert steps[0].finished_at is not None and steps[0].finished_at.tzinfo is UTC
    assert steps[0].started_at <= steps[0].finished_at
    assert store.list_steps("other") == []


def test_journal_retry_increments_attempt(store: Store) -> None:
    store.create_deployment(deployment("d1"))
    first = store.step_started("d1", 0, "start", "start web")
    store.step_finished("d1", 0, STEP_FAILED, error="port busy")
    second = store.step_started("d1", 0, "start", "start web (resumed)")
    assert second.attempt == 2
    assert second.status == STEP_RUNNING
    assert second.error is None and second.finished_at is None
    assert second.description == "start web (resumed)"
    assert second.started_at >= first.started_at
    third = store.step_started("d1", 0, "start", "start web")
    assert third.attempt == 3
    finished = store.step_finished("d1", 0, STEP_DONE)
    assert finished.attempt == 3 and finished.status == STEP_DONE
    assert store.list_steps("d1") == [finished]


def test_step_of_unknown_deployment(store: Store) -> None:
    with pytest.raises(StateError, match="cannot journal step 0 of deployment ghost"):
        store.step_started("ghost", 0, "start", "start web")
    store.create_deployment(deployment("d1"))
    with pytest.raises(StateError, match="never journalled as started"):
        store.step_finished("d1", 5, STEP_DONE)


# -- instances --------------------------------------------------------------


def test_instances(store: Store) -> None:
    store.upsert_instance(instance("web-2", created_at=T0))
    store.upsert_instance(instance("web-1", created_at=T0))
    store.upsert_instance(instance("web-0", created_at=T0 + timedelta(seconds=5)))
    store.upsert_instance(instance("api-0", service="api", environment="production"))
    assert [i.name for i in store.list_instances("staging")] == ["web-1", "web-2", "web-0"]
    assert [i.name for i in store.list_instances(service="api")] == ["api-0"]
    assert [i.name for i in store.list_instances("staging", "api")] == []
    assert len(store.list_instances()) == 4

    replaced = instance("web-1", release_id="r2", port=8009, state="ready", deployment_id="d1")
    store.upsert_instance(replaced)
    assert store.get_instance("web-1") == replaced

    assert store.set_instance_state("web-1", "serving") is True
    got = store.get_instance("web-1")
    assert got is not None and got.state == "serving"
    assert store.set_instance_state("ghost", "serving") is False

    assert store.delete_instance("web-1") is True
    assert store.delete_instance("web-1") is False
    assert store.get_instance("web-1") is None


# -- current releases -------------------------------------------------------


def test_current_releases(store: Store) -> None:
    assert store.current_releases("staging") == {}
    store.set_current("staging", "web", "r1", "d1")
    store.set_current("staging", "api", "r7", "d1")
    store.set_current("production", "web", "r0", None)
    store.set_current("staging", "web", "r2", "d2")
    assert store.current_releases("staging") == {"web": "r2", "api": "r7"}
    assert store.current_releases("production") == {"web": "r0"}


# -- events -------------------------------------------------------------------


def test_events_newest_first(store: Store) -> None:
    first = store.add_event("deploy.started", "deploying web r2", "staging", "d1", {"n": 1})
    store.add_event("note", "no environment")
    store.add_event("deploy.finished", "done", "staging", "d1")
    store.add_event("deploy.started", "prod", "production", "d2")
    assert first.id > 0 and first.data == {"n": 1} and first.environment == "staging"

    assert [e.message for e in store.list_events("staging")] == ["done", "deploying web r2"]
    assert [e.message for e in store.list_events(deployment_id="d2")] == ["prod"]
    assert [e.message for e in store.list_events(limit=2)] == ["prod", "done"]
    assert len(store.list_events()) == 4
    assert store.list_events("staging")[-1] == first
    assert store.list_events(limit=1)[0].data == {}


def test_events_of_one_kind(store: Store) -> None:
    store.add_event("run", 'run  web  "ls"  exit 0', "staging", data={"exit_code": 0})
    store.add_event("lock", "locked", "staging")
    store.add_event("run", 'run  web  "false"  exit 1', "production")
    assert [e.environment for e in store.list_events(kind="run")] == ["production", "staging"]
    assert [e.kind for e in store.list_events("staging", kind="lock")] == ["lock"]
    assert store.list_events("staging", kind="run")[0].data == {"exit_code": 0}


# -- one store, many threads ---------------------------------------------------


def test_store_is_usable_from_many_threads(store: Store) -> None:
    store.create_deployment(deployment("d1"))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                store.add_event("tick", f"{n}-{i}", "staging", "d1")
                store.step_started("d1", n, "start", f"thread {n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list_events(deployment_id="d1")) == 60
    assert [s.attempt for s in store.list_steps("d1")] == [10] * 6


def test_two_stores_on_one_database_see_each_other(store_url: str) -> None:
    with open_store(store_url) as one, open_store(store_url) as two:
        one.add_release(release("r1"))
        assert two.get_release("web", "r1") is not None
        two.set_current("staging", "web", "r1", None)
        assert one.current_releases("staging") == {"web": "r1"}


def test_the_journal_mark_changes_with_every_write_to_a_deployments_journal(store: Store) -> None:
    from conveyor.store.records import ApprovalRecord

    store.create_deployment(deployment("d1"))
    marks = [store.journal_mark("d1", "staging")]

    def changed() -> bool:
        marks.append(store.journal_mark("d1", "staging"))
        return marks[-1] != marks[-2]

    store.step_started("d1", 1, "start", "start web")
    assert changed()
    store.step_finished("d1", 1, "done")
    assert changed()
    store.add_event("pause", "paused", "staging", "d1")
    assert changed()
    store.add_approval(ApprovalRecord("d1", "bo", True, T0))
    assert changed()
    store.update_deployment("d1", status="succeeded", finished=True)
    assert changed()
    store.add_event("pause", "another deployment's", "staging", "d2")
    store.create_deployment(deployment("d0", started_at=T0 - timedelta(days=1)))
    assert not changed()  # neither its journal nor the newest of its environment
    store.create_deployment(deployment("d3", started_at=T0 + timedelta(days=1)))
    assert changed()  # a newer deployment: the page's buttons change
