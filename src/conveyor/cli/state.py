"""`conveyor state check|restore`: the SQLite state database and its last good copy."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from conveyor.cli.context import YesOption, load
from conveyor.cli.output import confirm, say
from conveyor.errors import UsageError

app = typer.Typer(
    help="Check the state database, or restore its last good copy.", no_args_is_help=True
)


def _state_file() -> Path:
    """The SQLite file of this project's state (`CONVEYOR_STATE_URL` or the home's)."""
    from conveyor.engine.status import sqlite_state_file
    from conveyor.paths import Paths

    paths = Paths.for_project(load(defer_unset=True).root)
    state = sqlite_state_file(paths, os.environ.get("CONVEYOR_STATE_URL"))
    if state is None:
        raise UsageError(
            "the state is not in a plain SQLite file (CONVEYOR_STATE_URL names another "
            "database): check and restore it with that database's own tools",
            hint="for PostgreSQL: its backups (pg_dump, point-in-time recovery)",
        )
    return state


def _summary(path: Path) -> str:
    """How many deployments `path` records and when the newest started."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count, newest = conn.execute("SELECT count(*), max(started_at) FROM deployments").fetchone()
    finally:
        conn.close()
    return f"{count} deployment{'s' * (count != 1)}" + (
        f", newest {str(newest)[:19]}" if newest else ""
    )


@app.command("check")
def state_check() -> None:
    """Check the state database (header, PRAGMA quick_check); exit 4 when it is damaged."""
    from conveyor.store import integrity

    state = _state_file()
    if not state.exists():
        integrity.check_file(state)  # missing while a last good copy exists: an error
        say(f"{state} does not exist yet: the first command that records something creates it")
        return
    problems = integrity.quick_check(state)
    if problems:
        raise integrity.damaged(state, f"is damaged: {'; '.join(problems[:3])}")
    copy = integrity.last_good_path(state)
    kept = f"last good copy {copy}" if copy.is_file() else "no last good copy yet"
    say(f"{state} is sound ({_summary(state)}); {kept}")


@app.command("restore")
def state_restore(
    source: Path | None = typer.Option(
        None, "--from", help="The copy to restore (default: the last good copy beside it)."
    ),
    yes: bool = YesOption,
) -> None:
    """Replace the state database by its last good copy (or --from FILE).

    What it replaces is kept in a `state.db.damaged-TIME` directory beside it.
    Deployments recorded after the copy was taken are not in it. Run it while no
    other conveyor command runs.
    """
    from conveyor.store import integrity

    state = _state_file()
    copy = source.resolve() if source is not None else integrity.last_good_path(state)
    if source is None and not copy.is_file():
        raise UsageError(
            f"there is no last good copy of {state} ({copy} does not exist)",
            hint="name a copy you keep: conveyor state restore --from FILE",
        )
    problems = integrity.quick_check(state) if state.exists() else ["it is missing"]
    now = f"damaged: {'; '.join(problems[:2])}" if problems else f"sound, {_summary(state)}"
    confirm(f"replace {state} ({now}) by {copy}?", yes=yes)
    kept = integrity.restore(state, copy)
    say(f"restored {state} from {copy} ({_summary(state)})")
    if kept is not None:
        say(f"what it replaced is kept in {kept}")
