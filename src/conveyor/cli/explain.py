"""`conveyor explain` and `conveyor analyze --replay`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import STATE, JsonOption, load
from conveyor.cli.output import emit_json, say
from conveyor.errors import UsageError

if TYPE_CHECKING:
    from conveyor.store.repository import Store


def register(app: typer.Typer) -> None:
    app.command()(explain)
    app.command()(analyze)


def _store() -> Store:
    from conveyor.engine.runtime import Runtime
    from conveyor.identity import current_user

    return Runtime.open(load(defer_unset=True), current_user()).store


def explain(
    deployment: str = typer.Argument(..., help="Deployment id (see: conveyor history)."),
    as_json: bool = JsonOption,
) -> None:
    """Why a rollout was promoted or aborted: its steps, measurements and verdicts."""
    from conveyor.engine.explain import explanation

    if STATE.server:
        from conveyor.remote import commands

        commands.explain(deployment, as_json)

        return
    print_explanation(explanation(_store(), deployment), as_json)


def print_explanation(data: dict[str, Any], as_json: bool) -> None:
    """`conveyor explain` of its `--json` (here or from a server)."""
    from conveyor.engine.explain import render

    if as_json:
        emit_json(data)
        return
    for line in render(data):
        say(line)


def analyze(
    deployment: str = typer.Argument(..., help="Deployment id whose analyses to judge again."),
    replay: bool = typer.Option(
        False, "--replay", help="Judge the recorded measurements again (required)."
    ),
    overrides: list[str] | None = typer.Option(
        None,
        "--set",
        help='Changed setting: a threshold like "error_rate<2%", "p95=off", or '
        '"alpha=0.05", "duration=2m", "comparative=off" (repeatable).',
    ),
    step: int | None = typer.Option(None, "--step", help="Only the analysis at this step."),
    as_json: bool = JsonOption,
) -> None:
    """Re-judge a deployment's recorded analysis measurements with other settings."""
    from conveyor.analysis import AnalysisSpecError
    from conveyor.engine.explain import render_replay, replay_runs

    if not replay:
        raise UsageError("conveyor analyze needs --replay (live analysis runs inside deploys)")
    try:
        results = replay_runs(_store(), deployment, overrides or [], step)
    except AnalysisSpecError as error:
        raise UsageError(f"--set: {error}") from None
    if as_json:
        emit_json(results)
        return
    for line in render_replay(results):
        say(line)
