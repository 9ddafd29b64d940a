"""The `conveyor` command: a thin layer that parses, calls the engine, renders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from conveyor import __version__
from conveyor.cli import (
    accessory,
    db,
    deploy,
    dora,
    explain,
    hosts,
    inspect,
    jobs,
    lock,
    oneoff,
    pipeline,
    project,
    releases,
    scaffold,
    secrets,
    server,
    shutdown,
    state,
)
from conveyor.cli.context import STATE
from conveyor.errors import ConveyorError
from conveyor.redaction import RedactingStream

app = typer.Typer(
    name="conveyor",
    help="Deploy web services from one conveyor.yml: health-gated, zero downtime, with "
    "history, rollback and crash recovery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"conveyor {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Path to conveyor.yml (default: search upwards from here)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        envvar="CONVEYOR_SERVER",
        metavar="URL",
        help="Act on this conveyor server through its API (env CONVEYOR_SERVER; the token "
        "comes from CONVEYOR_TOKEN, never from the command line).",
    ),
) -> None:
    """Conveyor: deployment orchestrator."""
    STATE.config_path = config
    if server:
        from conveyor.remote.commands import use_server

        use_server(ctx, server)


project.register(app)
scaffold.register(app)
releases.register(app)
deploy.register(app)
inspect.register(app)
oneoff.register(app)
explain.register(app)
shutdown.register(app)
hosts.register(app)
dora.register(app)
jobs.register(app)
server.register(app)
app.add_typer(lock.app, name="lock")
app.add_typer(secrets.app, name="secrets")
app.add_typer(db.app, name="db")
app.add_typer(accessory.app, name="accessory")
app.add_typer(state.app, name="state")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(pipeline.ci_app, name="ci")


def main() -> None:
    """Console entry point: user errors become messages and exit codes, never tracebacks.

    Typer itself reports usage errors (exit 2); everything Conveyor raises for
    a user is a `ConveyorError` with its own exit code.
    """
    from conveyor.cli.output import report_error

    # What Conveyor writes (state, logs, configs) is its user's alone; what others must
    # read (releases, the app's data) gets its mode where it is made.
    os.umask(0o077)
    # Every line Conveyor prints (text, --json, errors) passes one filter: the secrets
    # resolved so far are masked (`conveyor.redaction`).
    sys.stdout = RedactingStream(sys.stdout)
    sys.stderr = RedactingStream(sys.stderr)
    try:
        app()
    except ConveyorError as error:
        report_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
