"""Rendering for the CLI: human text through Rich, `--json` through json.dumps."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets room for whole tables, not 80 columns.
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A line for people (markup escaped)."""
    from rich.markup import escape

    console().print(escape(message))


def progress(message: str) -> None:
    """A timestamped progress line on stderr, so stdout stays parseable."""
    from rich.markup import escape

    stamp = datetime.now().strftime("%H:%M:%S")
    err_console().print(f"[dim]{stamp}[/dim] {escape(message)}")


def warn(message: str) -> None:
    """A warning for people on stderr: something to fix that did not stop the command."""
    from rich.markup import escape

    err_console().print(f"[yellow]warning:[/yellow] {escape(message)}")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, the one time format of `--json` output."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def confirm(question: str, *, yes: bool, flag: str = "--yes") -> None:
    """Ask on a terminal; without one, refuse unless `--yes` was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConveyorError(
            f"{question} needs confirmation and there is no terminal to ask",
            hint=f"pass {flag} to confirm",
        )
    import typer

    if not typer.confirm(question, default=False):
        raise ConveyorError("cancelled")


def report_error(error: ConveyorError) -> None:
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/bold red] {escape(error.message)}")
    if error.hint:
        err_console().print(f"[yellow]hint:[/yellow] {escape(error.hint)}")
