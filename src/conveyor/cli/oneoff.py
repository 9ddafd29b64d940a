"""`conveyor run ENV SERVICE -- COMMAND...`: a one-off command in the current release."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import run, runtime

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime
    from conveyor.store.records import EventRecord

# Everything after SERVICE is the command, options included (`-- ` is optional).
CONTEXT = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    app.command(name="run", context_settings=CONTEXT)(run_command)


def run_command(
    environment: str = typer.Argument(..., help="Environment."),
    service: str = typer.Argument(..., help="Service whose current release runs the command."),
    command: list[str] | None = typer.Argument(
        None, help="The command and its arguments, after --.", show_default=False
    ),
) -> None:
    """Run a one-off COMMAND in the current release of SERVICE in ENVIRONMENT.

    It gets the service's environment variables and runs in the release
    directory, attached to this terminal; its exit status is Conveyor's. It is
    recorded in `conveyor history` (secrets masked). Example:
    conveyor run staging web -- python manage.py createsuperuser
    """
    from conveyor.engine.oneoff import prepare, run_oneoff

    argv = list(command or [])
    if argv[:1] == ["--"]:  # kept by the parser when it came after the arguments
        argv = argv[1:]
    rt = runtime()
    try:
        rt.environment(environment)
        rt.secrets(environment)
        oneoff = prepare(rt, environment, service, argv)
        code = run(run_oneoff(rt, oneoff, announce=_announce))
    finally:
        rt.close()
    raise typer.Exit(code)


def _announce(message: str) -> None:
    """A line on stderr before the command's own output (stdout stays the command's)."""
    from rich.markup import escape

    from conveyor.cli.output import err_console

    err_console().print(f"[dim]conveyor:[/dim] {escape(message)}")


RUN_KIND = "run"  # `history --json` items of one-off commands (engine.oneoff.RUN_EVENT)


def history_runs(rt: Runtime, environment: str, limit: int) -> list[EventRecord]:
    """The environment's latest `run` events, newest first."""
    from conveyor.engine.oneoff import RUN_EVENT

    return rt.store.list_events(environment, kind=RUN_EVENT, limit=limit)


def with_runs(deployments: list[dict[str, Any]], runs: list[EventRecord]) -> list[dict[str, Any]]:
    """`history --json`: deployments and one-off runs in one list, newest first."""
    from conveyor.engine.oneoff import run_json

    items = [*deployments, *(run_json(e) for e in runs)]
    return sorted(items, key=lambda item: item.get("started_at") or "", reverse=True)


def print_runs(runs: list[dict[str, Any]]) -> None:
    """One line per run (as `history --json` lists it) under the deployments table of
    `history`."""
    from conveyor.cli.inspect import from_iso
    from conveyor.cli.output import local_time, say
    from conveyor.engine.oneoff import describe_run

    if not runs:
        return
    say("")
    say("one-off commands:")
    for item in runs:
        took = item.get("duration_s")
        host = item.get("host")
        line = describe_run(
            {
                "service": item.get("service"),
                "command": item.get("command"),
                "exit_code": item.get("exit_code"),
                "host": None if host == "local" else host,
            }
        )
        say(
            f"  {local_time(from_iso(item.get('finished_at')))}  {line}  "
            f"{item.get('user') or '-'}  {f'{took:.1f}s' if took is not None else '-'}  "
            f"release {item.get('release') or '-'}"
        )
