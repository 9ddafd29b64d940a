"""A damaged, emptied or missing SQLite state database, and its last good copy.

Opening a state file first checks what is cheap to check (a SQLite header; not
empty or missing where a store existed before); SQLite's own errors
about a damaged file (and the `UnicodeDecodeError` Python raises when the
damage reaches an error message) become a `StateCorruptError` naming the file
and how to restore it. After each deployment the state is copied with SQLite's
online backup API to `<state>.last-good` (mode 600), only from a database that
passes `PRAGMA quick_check`; `conveyor state restore` puts it (or another
copy) back and keeps what it replaces.

Standard library only: `conveyor status` uses it too.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from conveyor.errors import StateCorruptError
from conveyor.store.space import reserve_path

SQLITE_HEADER = b"SQLite format 3\x00"
_CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_SIDE_FILES = ("-wal", "-shm")


def last_good_path(state_db: Path) -> Path:
    """Where the last good copy of `state_db` is kept."""
    return state_db.with_name(state_db.name + ".last-good")


def _when(path: Path) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def restore_hint(state_db: Path) -> str:
    """What to do about a damaged `state_db`: restore the last good copy, or another."""
    copy = last_good_path(state_db)
    afresh = (
        f"to start afresh instead (no history, no current releases, no instances), move "
        f"{state_db.name}* out of {state_db.parent}"
    )
    if copy.is_file():
        return (
            f"put back its last good copy ({copy}, taken {_when(copy)}): conveyor state "
            "restore (the damaged file is kept beside it; deployments recorded since then are "
            f"not in the copy); {afresh}"
        )
    return (
        f"there is no last good copy ({copy}): restore one you keep with conveyor state "
        f"restore --from FILE; {afresh}"
    )


def damaged(state_db: Path, what: str) -> StateCorruptError:
    """The error for `state_db` in the state `what` ("is empty (0 bytes)", ...)."""
    return StateCorruptError(
        f"the state database {state_db} {what}; nothing was done", hint=restore_hint(state_db)
    )


def _existed(state_db: Path) -> bool:
    """Whether a store was opened here before: its last good copy or its reserve exists.

    (An empty file alone is no proof: SQLite creates the file before it writes a page,
    so another conveyor process may be creating it right now.)
    """
    return last_good_path(state_db).is_file() or reserve_path(state_db).is_file()


def check_file(state_db: Path) -> None:
    """Raise `StateCorruptError` when `state_db` is not SQLite, or is empty or missing
    although a store existed there (its state was lost: this is not a new home)."""
    try:
        with state_db.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        if _existed(state_db):
            raise damaged(state_db, "is missing, but a store existed there") from None
        return
    except OSError as exc:
        raise damaged(state_db, f"cannot be read: {exc.strerror or exc}") from None
    if not header and _existed(state_db):
        raise damaged(
            state_db,
            "is empty (0 bytes): the history, current releases and instances it held are gone",
        )
    if header and header != SQLITE_HEADER:
        raise damaged(state_db, "is not a SQLite database (its header is damaged)")


def is_corruption(exc: BaseException) -> bool:
    """True for an error SQLite (or Python reading its messages) gives on a damaged file."""
    origin = getattr(exc, "orig", None) or exc
    if isinstance(origin, UnicodeDecodeError):
        return True
    if isinstance(origin, sqlite3.DatabaseError):
        if getattr(origin, "sqlite_errorcode", None) in _CORRUPTION_CODES:
            return True
        text = str(origin)
        return "malformed" in text or "not a database" in text
    return False


def quick_check(path: Path, *, read_header: bool = True) -> list[str]:
    """What `PRAGMA quick_check` finds wrong in the SQLite file `path`; [] when sound.

    `read_header=False` in a process that has the database open (SQLite then says
    "file is not a database" itself): opening the file apart from SQLite and closing it
    drops every POSIX lock the process holds on it, and another process closing its last
    connection would then delete the WAL from under this one's (a long-lived
    `conveyor server` would read a stale state from then on).
    """
    try:
        if read_header:
            check_file(path)
        if not path.is_file() or path.stat().st_size == 0:
            return [f"{path} does not exist or is empty"]
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
            rows = conn.execute("PRAGMA quick_check").fetchall()
            conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except StateCorruptError as exc:
        return [exc.message]
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        return [_describe(exc)]
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "SQLite reports damage (its message is unreadable)"
    return str(exc)


def save_last_good(state_db: Path) -> Path | None:
    """Copy `state_db` to its last good copy if it passes `quick_check`; the copy, or None.

    Uses SQLite's online backup (consistent while other processes write), into a
    temporary file that replaces the old copy only once complete.
    """
    if quick_check(state_db, read_header=False):  # the caller's store has it open
        return None
    copy = last_good_path(state_db)
    partial = copy.with_name(copy.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        _backup(state_db, partial)
        partial.replace(copy)
    finally:
        partial.unlink(missing_ok=True)
    return copy


def _backup(source: Path, destination: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    with destination.open("rb") as handle:
        os.fsync(handle.fileno())


def restore(state_db: Path, source: Path) -> Path | None:
    """Replace `state_db` by a sound copy of `source`; returns where the replaced files
    were moved (None when there were none). Raises `StateCorruptError` when `source`
    is not a sound state database."""
    problems = quick_check(source)
    if problems:
        raise StateCorruptError(
            f"cannot restore the state from {source}: it is not a sound state database "
            f"({'; '.join(problems[:3])})",
            hint="name another copy with --from FILE",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = state_db.with_name(f"{state_db.name}.damaged-{stamp}")
    present = [state_db.with_name(state_db.name + s) for s in ("", *_SIDE_FILES)]
    present = [p for p in present if p.exists()]
    if present:
        kept.mkdir(mode=0o700)
        for path in present:
            path.rename(kept / path.name)
    partial = state_db.with_name(state_db.name + ".restoring")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _backup(source, partial)
    partial.rename(state_db)
    return kept if present else None
