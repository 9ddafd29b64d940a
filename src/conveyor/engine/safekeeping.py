"""Before a deployment: room to record it to its end. After it: a last good copy of the state.

See `conveyor.store.space` (the reserve that keeps the state writable on a
full disk) and `conveyor.store.integrity` (the last good copy).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from conveyor.errors import DiskFullError
from conveyor.store import integrity, space

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime


def ensure_room(rt: Runtime, what: str) -> None:
    """Refuse to start `what` (a deploy, a build) on a filesystem that is (nearly) full:
    the home's, and the state database's when elsewhere. Allocates the state's reserve."""
    home = rt.paths.home
    space.ensure_free(home, space.MARGIN_BYTES, what, home)
    state = rt.store.state_file
    if state is None:
        return
    if state.parent != home:
        space.ensure_free(state.parent, space.MARGIN_BYTES, what, home)
    if not space.ensure_reserve(state):
        raise DiskFullError(
            f"cannot allocate the {space.mib(space.RESERVE_BYTES)} reserve of the state in "
            f"{state.parent} for {what} ({space.mib(space.free_bytes(state.parent))} free)",
            hint=space.PRUNE_HINT.format(home=home),
        )


def keep_last_good(rt: Runtime) -> None:
    """Copy the state to its last good copy (SQLite state only); a note when it cannot."""
    state = rt.store.state_file
    if state is None:
        return
    try:
        saved = integrity.save_last_good(state)
    except (OSError, sqlite3.Error) as exc:
        rt.notes.append(
            f"could not update the last good copy of the state "
            f"({integrity.last_good_path(state)}): {exc}"
        )
        return
    if saved is None:
        rt.notes.append(
            f"the state database {state} failed its integrity check: its last good copy "
            f"{integrity.last_good_path(state)} was left as it was; run conveyor state check"
        )


def unlock(rt: Runtime, environment: str, deployment_id: str) -> None:
    """Release the lock of a deployment that ended (or stopped), then keep a last good copy."""
    rt.store.release_lock(environment, deployment_id)
    keep_last_good(rt)
