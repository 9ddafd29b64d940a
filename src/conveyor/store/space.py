"""Free disk space where Conveyor writes, and the reserve that keeps the state writable.

Any change to a SQLite database needs new pages (WAL frames), a DELETE that
releases a lock too. So that a deployment whose steps have all run can always
be recorded and unlocked, a home keeps a reserve file of `RESERVE_BYTES` beside
its state database, allocated while there is room. When the filesystem runs
low, the store deletes the reserve before it writes (`Store` does it) and says
so; builds and deploys then refuse to start (`ensure_free`) until there is room
again, and the next one that starts allocates the reserve anew.

Standard library only: `conveyor status` must not pay for more.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from conveyor.errors import DiskFullError

RESERVE_BYTES = 4 << 20
"""The reserve kept beside the state database: many deployments' worth of state writes."""

LOW_WATER_BYTES = 1 << 20
"""Below this much free space a state write first gives the reserve back to the filesystem."""

MARGIN_BYTES = 8 << 20
"""Free space a build or deploy needs on top of what it writes itself (logs, state, reserve)."""

PRUNE_HINT = (
    "free space on that filesystem: conveyor prune removes old releases (conveyor prune "
    "--dry-run lists them); old logs under {home}/logs can be deleted too"
)


def reserve_path(state_db: Path) -> Path:
    """The reserve file of the state database `state_db`."""
    return state_db.with_name(state_db.name + ".reserve")


def free_bytes(path: Path) -> int:
    """Free bytes for this user on the filesystem holding `path` (or its nearest parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except FileNotFoundError:
            continue
    return 0


def mib(size: int) -> str:
    """`size` bytes in MiB, one decimal."""
    return f"{size / (1 << 20):.1f} MiB"


def ensure_reserve(state_db: Path) -> bool:
    """Allocate the reserve when it is missing and there is room; True when it exists."""
    path = reserve_path(state_db)
    if path.exists():
        return True
    if free_bytes(state_db.parent) < RESERVE_BYTES + LOW_WATER_BYTES:
        return False
    partial = path.with_name(path.name + ".partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            # Blocks really allocated (not a sparse file), so that deleting it frees them.
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
        partial.rename(path)
    except OSError:
        partial.unlink(missing_ok=True)
        return False
    return True


def release_reserve(state_db: Path) -> bool:
    """Give the reserve back to the filesystem; True when there was one."""
    try:
        reserve_path(state_db).unlink()
    except FileNotFoundError:
        return False
    return True


def ensure_free(path: Path, needed: int, what: str, home: Path) -> None:
    """Raise `DiskFullError` unless the filesystem of `path` has `needed` bytes free."""
    free = free_bytes(path)
    if free < needed:
        raise DiskFullError(
            f"not enough free space for {what}: {mib(free)} free in {path}, {mib(needed)} needed",
            hint=PRUNE_HINT.format(home=home),
        )


def is_disk_full(exc: BaseException) -> bool:
    """True for an error that says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(exc)


def disk_full_error(path: Path, what: str, home: Path) -> DiskFullError:
    """The error for running out of space at `path` while doing `what`."""
    return DiskFullError(
        f"the disk is full: cannot {what} in {path} ({mib(free_bytes(path))} free)",
        hint=PRUNE_HINT.format(home=home),
    )
