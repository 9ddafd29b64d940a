"""Environment locks: atomic acquisition, the held-lock error, hand-over, races."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from conveyor.errors import LockHeldError
from conveyor.store import EnvironmentLockedError, Store, open_store
from conveyor.store.records import LockRecord

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def lock(
    environment: str = "production",
    holder: str = "alice",
    deployment_id: str | None = "d-42",
    **fields: object,
) -> LockRecord:
    values: dict[str, object] = {
        "environment": environment,
        "holder": holder,
        "acquired_at": T0,
        "deployment_id": deployment_id,
        "message": "deploying web r7",
        "pid": 4242,
        "hostname": "build-1",
    }
    values.update(fields)
    return LockRecord(**values)  # type: ignore[arg-type]


def test_acquire_get_release(store: Store) -> None:
    assert store.get_lock("production") is None
    acquired = store.acquire_lock(lock())
    assert acquired == lock()
    assert store.get_lock("production") == acquired
    assert store.release_lock("production") is True
    assert store.get_lock("production") is None
    assert store.release_lock("production") is False


def test_lock_acquired_at_is_stored_in_utc(store: Store) -> None:
    eastern = timezone(timedelta(hours=-4))
    acquired = store.acquire_lock(lock(acquired_at=datetime(2026, 5, 1, 8, 0, tzinfo=eastern)))
    assert acquired.acquired_at == T0 and acquired.acquired_at.tzinfo is UTC


def test_held_lock_error_says_who_since_when_for_what(store: Store) -> None:
    store.acquire_lock(lock())
    with pytest.raises(LockHeldError) as caught:
        store.acquire_lock(lock(holder="bob", deployment_id="d-43", pid=1, hostname="laptop"))
    error = caught.value
    assert isinstance(error, EnvironmentLockedError)
    assert error.lock == lock()
    assert error.message == (
        'environment "production" is locked by alice (pid 4242 on build-1) '
        "since 2026-05-01T12:00:00Z for deployment d-42: deploying web r7"
    )
    assert error.hint == (
        'wait for it to finish, or run "conveyor lock release production" '
        "if you are sure it is stale"
    )
    assert store.get_lock("production") == lock()  # the holder is unchanged


def test_held_lock_error_without_optional_fields(store: Store) -> None:
    store.acquire_lock(lock(deployment_id=None, message=None, pid=None, hostname=None))
    with pytest.raises(LockHeldError) as caught:
        store.acquire_lock(lock(holder="bob"))
    assert caught.value.message == (
        'environment "production" is locked by alice since 2026-05-01T12:00:00Z'
    )


def test_locks_are_per_environment(store: Store) -> None:
    store.acquire_lock(lock("production"))
    store.acquire_lock(lock("staging", holder="bob"))
    staging = store.get_lock("staging")
    assert staging is not None and staging.holder == "bob"


def test_release_only_for_the_matching_deployment(store: Store) -> None:
    store.acquire_lock(lock(deployment_id="d-42"))
    assert store.release_lock("production", deployment_id="d-99") is False
    assert store.get_lock("production") is not None
    assert store.release_lock("production", deployment_id="d-42") is True
    assert store.get_lock("production") is None


def test_update_lock_hands_it_to_a_resuming_process(store: Store) -> None:
    store.acquire_lock(lock())
    moved = store.update_lock("production", pid=777, hostname="build-2", holder="carol")
    assert moved == lock(pid=777, hostname="build-2", holder="carol")
    assert store.get_lock("production") == moved
    cleared = store.update_lock("production", message=None)
    assert cleared is not None and cleared.message is None and cleared.pid == 777
    assert store.update_lock("production") == cleared
    assert store.update_lock("staging", pid=1) is None


def test_lock_race_between_threads(store_url: str) -> None:
    """Several stores (own connections) race for each environment: one wins each."""
    contenders = 4
    environments = [f"env-{n}" for n in range(8)]
    stores = [open_store(store_url) for _ in range(contenders)]
    barrier = threading.Barrier(contenders)
    outcomes: dict[str, list[str]] = {env: [] for env in environments}
    errors: list[BaseException] = []
    guard = threading.Lock()

    def contend(n: int) -> None:
        try:
            for env in environments:
                barrier.wait(timeout=30)
                try:
                    stores[n].acquire_lock(lock(env, holder=f"user-{n}", deployment_id=f"d-{n}"))
                    result = "won"
                except LockHeldError as exc:
                    result = f"lost to {exc.lock.holder}"  # type: ignore[attr-defined]
                with guard:
                    outcomes[env].append(f"{n}:{result}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for s in stores:
            s.close()
    assert errors == []
    with open_store(store_url) as store:
        for env in environments:
            results = outcomes[env]
            winners = [r for r in results if r.endswith(":won")]
            assert len(results) == contenders and len(winners) == 1, results
            winner = winners[0].split(":")[0]
            assert all(r.endswith(f"lost to user-{winner}") for r in results if r not in winners)
            held = store.get_lock(env)
            assert held is not None and held.holder == f"user-{winner}"


# A contender process: opens the store, waits for the start time, tries once.
CONTENDER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime
    from conveyor.errors import LockHeldError
    from conveyor.store import open_store
    from conveyor.store.records import LockRecord

    url, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = open_store(url)
    results = []
    for env in sys.argv[4:]:
        record = LockRecord(environment=env, holder=name, acquired_at=datetime.now(UTC))
        while time.time() < start:
            pass
        try:
            store.acquire_lock(record)
            results.append("won")
        except LockHeldError as exc:
            results.append("lost to " + exc.lock.holder)
        start += 0.2
    store.close()
    print(json.dumps(results))
    """
)


def test_lock_race_between_processes(
    store: Store, store_url: str, subprocess_env: dict[str, str]
) -> None:
    environments = [f"env-{n}" for n in range(5)]
    names = ["proc-a", "proc-b", "proc-c"]
    start = time.time() + 3.0  # after every child has imported and connected
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, store_url, name, str(start), *environments],
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    results: dict[str, list[str]] = {}
    for name, child in zip(names, children, strict=True):
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results[name] = json.loads(out)
    for i, env in enumerate(environments):
        row = {name: results[name][i] for name in names}
        winners = [name for name, outcome in row.items() if outcome == "won"]
        assert len(winners) == 1, row
        assert all(o == f"lost to {winners[0]}" for o in row.values() if o != "won"), row
        held = store.get_lock(env)
        assert held is not None and held.holder == winners[0]
