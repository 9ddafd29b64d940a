"""`conveyor jobs ENV [--json]`, `conveyor jobs run ENV NAME` and `conveyor agent ENV`:
scheduled jobs (README "Scheduled jobs")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import JsonOption, run, runtime
from conveyor.cli.groups import DefaultCommandGroup
from conveyor.cli.output import emit_json, iso, local_time, say

if TYPE_CHECKING:
    from conveyor.config.models import ScheduledJob
    from conveyor.engine.runtime import Runtime
    from conveyor.store.records import JobRunRecord


class _ListByDefault(DefaultCommandGroup):
    """`conveyor jobs ENV` is `conveyor jobs list ENV`."""

    default = "list"


app = typer.Typer(
    cls=_ListByDefault,
    no_args_is_help=True,
    help="Scheduled jobs (jobs: in conveyor.yml): `conveyor jobs ENV [--json]` lists them with "
    "their last and next runs; `conveyor jobs run ENV NAME` runs one now.",
)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="jobs")
    main.command("agent")(agent)


@app.command("list")
def jobs_list(
    environment: str = typer.Argument(..., help="Environment."), as_json: bool = JsonOption
) -> None:
    """Each job of ENVIRONMENT: its schedule, last run and next run."""
    rt = runtime(defer_unset=True)
    try:
        rt.environment(environment)
        report = jobs_report(rt, environment)
    finally:
        rt.close()
    if as_json:
        emit_json(report)
        return
    _print_report(report)


@app.command("run")
def jobs_run(
    environment: str = typer.Argument(..., help="Environment."),
    name: str = typer.Argument(..., help="The job (a key under jobs: in conveyor.yml)."),
    as_json: bool = JsonOption,
) -> None:
    """Run job NAME of ENVIRONMENT now, here, and record it like a scheduled run; exits
    with its exit status (1 when it could not run, or a run of it is still going)."""
    from conveyor.agent.runs import job_of, run_job
    from conveyor.store.records import JOB_SKIPPED, JOB_SUCCEEDED

    rt = runtime()
    try:
        job_of(rt, environment, name)
        rt.secrets(environment)

        async def go() -> JobRunRecord:
            done = await run_job(rt, environment, name)
            await rt.notifications.drain()
            return done

        record = run(go())
    finally:
        rt.close()
    if as_json:
        emit_json(run_json(record))
    else:
        if record.output:
            say(record.output)
        say(_describe_run(record))
    if record.status == JOB_SUCCEEDED:
        return
    if record.status == JOB_SKIPPED or not record.exit_code:
        raise typer.Exit(1)
    raise typer.Exit(record.exit_code)


def agent(environment: str = typer.Argument(..., help="Environment.")) -> None:
    """Run ENVIRONMENT's scheduled jobs and monitors until stopped (SIGTERM). Deploys start
    it under supervisord when the environment has jobs or monitors; you do not run it by
    hand."""
    from conveyor.agent.program import secrets_from_environment
    from conveyor.agent.scheduler import serve

    rt = runtime()
    try:
        rt.environment(environment)
        secrets_from_environment(rt, environment)
        run(serve(rt, environment, _log))
    finally:
        rt.close()


def _log(message: str) -> None:
    from conveyor.redaction import redact_registered

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"{stamp} {redact_registered(message)}", flush=True)


# -- the report ------------------------------------------------------------------------


def jobs_report(rt: Runtime, environment: str) -> dict[str, Any]:
    """`conveyor jobs ENV --json` (documented in the README)."""
    from conveyor.agent.program import program_name

    info = rt.supervisor.program_info(program_name(environment))
    running = info is not None and info.status.state == "running"
    jobs = [
        _job_json(rt, environment, name, job)
        for name, job in rt.loaded.config.jobs_for(environment).items()
    ]
    return {
        "environment": environment,
        "agent": {
            "running": running,
            "pid": info.status.pid if info is not None and running else None,
            "log": str(info.log_path) if info is not None else None,
        },
        "jobs": jobs,
    }


def _job_json(rt: Runtime, environment: str, name: str, job: ScheduledJob) -> dict[str, Any]:
    from conveyor.agent.runs import describe_job
    from conveyor.agent.schedule import next_run
    from conveyor.store.records import JOB_SKIPPED

    recent = rt.store.list_job_runs(environment, name, limit=20)
    last = recent[0] if recent else None
    started = next((r.started_at for r in recent if r.status != JOB_SKIPPED), None)
    upcoming = next_run(job.schedule, job.every, job.timezone, datetime.now(UTC), started)
    return {
        "name": name,
        "schedule": job.schedule,
        "every": job.every,
        "timezone": job.timezone,
        "what": describe_job(job),
        "service": job.service,
        "backup": job.backup,
        "keep": job.keep,
        "timeout": job.timeout,
        "last_run": run_json(last) if last is not None else None,
        "next_run": iso(upcoming),
    }


def run_json(r: JobRunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "job": r.job,
        "environment": r.environment,
        "status": r.status,
        "trigger": r.trigger,
        "scheduled_at": iso(r.scheduled_at),
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
        "duration_s": r.duration_s,
        "exit_code": r.exit_code,
        "service": r.service,
        "release": r.release_id,
        "host": r.host,
        "detail": r.detail,
        "output": r.output,
    }


def _describe_run(r: JobRunRecord) -> str:
    """`job clear-sessions: run 12 succeeded, exit 0 in 1.2s on host2`."""
    parts = [f"job {r.job}: run {r.id} {r.status}"]
    if r.exit_code is not None:
        parts.append(f", exit {r.exit_code}")
    if r.duration_s is not None and r.status != "skipped":
        parts.append(f" in {r.duration_s:.1f}s")
    if r.host and r.host != "local":
        parts.append(f" on {r.host}")
    if r.detail:
        parts.append(f": {r.detail}")
    return "".join(parts)


def _print_report(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from conveyor.cli.output import console

    environment = report["environment"]
    if not report["jobs"]:
        say(f"{environment} has no scheduled jobs (jobs: in conveyor.yml)")
        return
    agent = report["agent"]
    state = f"running (pid {agent['pid']})" if agent["running"] else "not running"
    hint = "" if agent["running"] else f": conveyor deploy {environment} starts it"
    say(f"agent of {environment}: {state}{hint}")
    table = Table(box=None, pad_edge=False)
    for column in ("job", "schedule", "what", "last run", "next run"):
        table.add_column(column)
    for job in report["jobs"]:
        when = job["schedule"] or f"every {job['every']:g}s"
        if job["timezone"] != "UTC":
            when += f" ({job['timezone']})"
        last = job["last_run"]
        if last is None:
            last_text = "never"
        else:
            took = f" {last['duration_s']:.1f}s" if last["duration_s"] is not None else ""
            code = f" exit {last['exit_code']}" if last["exit_code"] is not None else ""
            started = datetime.fromisoformat(last["started_at"].replace("Z", "+00:00"))
            last_text = f"{last['status']}{code} {local_time(started)}{took}"
        upcoming = job["next_run"]
        next_text = (
            local_time(datetime.fromisoformat(upcoming.replace("Z", "+00:00"))) if upcoming else "-"
        )
        table.add_row(
            escape(job["name"]), escape(when), escape(job["what"]), escape(last_text), next_text
        )
    console().print(table)
