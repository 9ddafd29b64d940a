"""`conveyor shutdown`: stop everything Conveyor runs on this machine for the project."""

from __future__ import annotations

import typer

from conveyor.cli.context import JsonOption, YesOption, run, runtime
from conveyor.cli.output import confirm, emit_json, progress, say


def register(app: typer.Typer) -> None:
    app.command()(shutdown)


def shutdown(yes: bool = YesOption, as_json: bool = JsonOption) -> None:
    """Stop every instance, the routers (Caddy, HAProxy) and supervisord of this project.

    Refused while a deployment is unfinished or an environment is locked. `conveyor
    deploy` starts everything again.
    """
    from conveyor.engine import shutdown as engine

    rt = runtime()
    engine.check_idle(rt)
    running = engine.what_runs(rt)
    if running:
        counts: dict[str, int] = {}
        for process in running:
            counts[process.kind] = counts.get(process.kind, 0) + 1
        what = ", ".join(f"{n} {kind}{'s' * (n != 1)}" for kind, n in counts.items())
        confirm(f"stop everything Conveyor runs for {rt.loaded.config.project} ({what})?", yes=yes)
    report = run(engine.shutdown(rt, progress if not as_json else _silent))
    if as_json:
        emit_json(report.to_json())
        return
    if not report.stopped:
        say(f"nothing of {report.project} runs on this machine")
        return
    for environment, deployment in report.downs.items():
        say(f"{environment} is down (deployment {deployment})")
    for process in report.stopped:
        pid = f" (pid {process.pid})" if process.pid else ""
        left = "" if process.gone else ": still running after it was stopped"
        say(f"stopped {process.kind} {process.name}{pid}{left}")
    say("everything is stopped; `conveyor deploy ENV` starts it again")


def _silent(_: str) -> None:
    return None
