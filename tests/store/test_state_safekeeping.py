"""A damaged or emptied SQLite state file, its last good copy, and the disk-space reserve."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from conveyor.errors import EXIT_STATE, DiskFullError, StateCorruptError
from conveyor.store import integrity, open_store, space
from conveyor.store.records import DeploymentRecord


def deployment(number: int) -> DeploymentRecord:
    return DeploymentRecord(
        id=f"d{number}",
        environment="staging",
        kind="deploy",
        status="succeeded",
        strategy="rolling",
        releases={"api": "r1"},
        previous={},
        user="tester@example.com",
        reason=None,
        started_at=datetime.now(UTC),
    )


def state_with(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "state.db"
    with open_store(f"sqlite:///{path}") as store:
        for number in range(count):
            store.create_deployment(deployment(number))
    return path


def deployments_in(path: Path) -> list[str]:
    with open_store(f"sqlite:///{path}") as store:
        return sorted(d.id for d in store.list_deployments())


def test_opening_a_store_allocates_its_reserve(tmp_path: Path) -> None:
    path = state_with(tmp_path, 0)
    reserve = space.reserve_path(path)
    assert reserve.stat().st_size == space.RESERVE_BYTES
    assert reserve.stat().st_blocks * 512 >= space.RESERVE_BYTES  # allocated, not sparse
    assert reserve.stat().st_mode & 0o777 == 0o600


def test_an_empty_file_where_a_store_existed_is_refused(tmp_path: Path) -> None:
    path = state_with(tmp_path, 2)
    path.write_bytes(b"")
    with pytest.raises(StateCorruptError) as caught:
        open_store(f"sqlite:///{path}")
    assert caught.value.exit_code == EXIT_STATE == 4
    assert str(path) in caught.value.message and "empty (0 bytes)" in caught.value.message
    assert caught.value.hint is not None and "conveyor state restore --from" in caught.value.hint


def test_an_empty_file_in_a_new_home_is_a_new_store(tmp_path: Path) -> None:
    # Another process may have just created it: SQLite writes the first page later.
    path = tmp_path / "state.db"
    path.write_bytes(b"")
    assert deployments_in(path) == []


def test_last_good_copy_round_trip(tmp_path: Path) -> None:
    path = state_with(tmp_path, 3)
    copy = integrity.save_last_good(path)
    assert copy == integrity.last_good_path(path)
    assert copy.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"")

    kept = integrity.restore(path, copy)

    assert deployments_in(path) == ["d0", "d1", "d2"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert kept is not None and (kept / "state.db").stat().st_size == 0


def test_a_damaged_state_never_replaces_the_last_good_copy(tmp_path: Path) -> None:
    path = state_with(tmp_path, 1)
    copy = integrity.save_last_good(path)
    assert copy is not None
    before = copy.read_bytes()
    with path.open("r+b") as handle:
        handle.write(b"not SQLite at all")
    assert integrity.quick_check(path)
    assert integrity.save_last_good(path) is None
    assert copy.read_bytes() == before


def test_restore_refuses_a_copy_that_is_not_a_state_database(tmp_path: Path) -> None:
    path = state_with(tmp_path, 1)
    other = tmp_path / "other.db"
    other.write_text("hello\n")
    with pytest.raises(StateCorruptError) as caught:
        integrity.restore(path, other)
    assert str(other) in caught.value.message
    assert deployments_in(path) == ["d0"]  # untouched


def test_ensure_free_names_the_path_and_what_to_prune(tmp_path: Path) -> None:
    with pytest.raises(DiskFullError) as caught:
        space.ensure_free(tmp_path, 1 << 62, "building api", tmp_path / "home")
    assert str(tmp_path) in caught.value.message and "needed" in caught.value.message
    assert caught.value.hint is not None and "conveyor prune" in caught.value.hint
    assert str(tmp_path / "home" / "logs") in caught.value.hint


def test_a_long_lived_store_sees_what_others_write_after_it_kept_a_last_good_copy(
    tmp_path: Path,
) -> None:
    """`conveyor server` keeps its store open across deploys: the last good copy it
    makes after each must not lose its locks on the state (another process closing
    its last connection would delete the WAL under it, leaving it a stale state)."""
    import subprocess
    import sys

    path = state_with(tmp_path, 1)

    def other_process(number: int | None) -> None:
        write = "" if number is None else f"s.create_deployment(deployment({number})); "
        code = (
            "from tests.store.test_state_safekeeping import deployment; "
            "from conveyor.store import open_store; "
            f"s = open_store('sqlite:///{path}'); s.list_deployments(); {write}s.close()"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    with open_store(f"sqlite:///{path}") as server:
        server.create_deployment(deployment(1))  # in the WAL, not yet in the file
        assert integrity.save_last_good(path) is not None
        other_process(None)  # reads, closes: the last connection? not while ours is open
        other_process(2)
        assert sorted(d.id for d in server.list_deployments()) == ["d0", "d1", "d2"]
