"""One run of a scheduled job: a command in a service's current release, or a backup.

A command runs as `conveyor run` runs one (`conveyor.engine.oneoff`): in the current
release of the service, with its instances' variables and secrets, through the
environment's target, so on a fleet it runs on the service's run host. A backup job
takes, verifies and prunes a backup as `conveyor db backup` does, keeping `keep` of its
own backups. Each run is a `JobRunRecord`: started, then finished with its exit code
and the last lines of its output (secrets masked); a failed one is announced to the
`notify:` targets as `job_failed`. A run that is due while another run of the job is
still going (in this process or another, `conveyor jobs run`) is recorded as skipped.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.config.durations import format_duration
from conveyor.config.models import ScheduledJob, command_argv
from conveyor.errors import ConveyorError, UsageError
from conveyor.printable import printable
from conveyor.redaction import env_secrets, redact_registered, redact_text
from conveyor.store.records import (
    JOB_FAILED,
    JOB_RUNNING,
    JOB_SKIPPED,
    JOB_SUCCEEDED,
    JobRunRecord,
)
from conveyor.targets.supervisor import pid_alive

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

SCHEDULE = "schedule"  # started by the agent's scheduler
MANUAL = "manual"  # `conveyor jobs run`
TAIL_LINES = 20  # lines of output a run keeps
KEEP_RUNS = 1000  # runs kept per job (a job every minute: the last 16 hours)
TAIL_CHARS = 4000
STOPPED = "the agent stopped while it ran"

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def job_of(rt: Runtime, environment: str, name: str) -> ScheduledJob:
    """The job `name` of `environment`; `UsageError` when it has none of that name."""
    rt.environment(environment)
    jobs = rt.loaded.config.jobs_for(environment)
    if name not in jobs:
        known = ", ".join(sorted(jobs)) or "none"
        raise UsageError(
            f'environment {environment} has no job "{name}" (its jobs: {known})',
            hint="jobs are declared under jobs: in conveyor.yml",
        )
    return jobs[name]


def tail(output: str, secrets: list[str]) -> str:
    """The last lines of `output` as a run keeps them: secrets masked, printable.

    >>> tail("a\\nb\\n" + "c" * 5, [])
    'a\\nb\\nccccc'
    """
    lines = [printable(line) for line in output.rstrip("\n").splitlines()[-TAIL_LINES:]]
    return redact_text(redact_registered("\n".join(lines)), secrets)[-TAIL_CHARS:]


def live_runs(rt: Runtime, environment: str, job: str) -> list[JobRunRecord]:
    """The runs of `job` still going. A run whose process is gone on this machine (an
    agent killed halfway) is closed as failed first."""
    here = socket.gethostname()
    live = []
    for run in rt.store.list_job_runs(environment, job, status=JOB_RUNNING):
        if run.hostname == here and run.pid is not None and not pid_alive(run.pid):
            rt.store.finish_job_run(
                run.id, status=JOB_FAILED, finished_at=datetime.now(UTC), detail=STOPPED
            )
            continue
        live.append(run)
    return live


def _new_run(
    environment: str, name: str, status: str, scheduled_at: datetime | None, **fields: Any
) -> JobRunRecord:
    """A run to record, starting now (its id is the store's to give)."""
    trigger = SCHEDULE if scheduled_at is not None else MANUAL
    return JobRunRecord(
        id=0,
        environment=environment,
        job=name,
        status=status,
        trigger=trigger,
        started_at=datetime.now(UTC),
        scheduled_at=scheduled_at,
        **fields,
    )


def record_skipped(
    rt: Runtime, environment: str, name: str, scheduled_at: datetime | None, detail: str
) -> JobRunRecord:
    run = _new_run(environment, name, JOB_SKIPPED, scheduled_at, duration_s=0.0, detail=detail)
    return rt.store.add_job_run(replace(run, finished_at=run.started_at))


@dataclass
class _Outcome:
    exit_code: int | None = None
    output: str = ""
    detail: str | None = None
    host: str | None = None
    release_id: str | None = None
    secrets: list[str] = field(default_factory=list)


async def run_job(
    rt: Runtime,
    environment: str,
    name: str,
    *,
    scheduled_at: datetime | None = None,
    log: Log = _quiet,
) -> JobRunRecord:
    """Run job `name` of `environment` now and record it (skipped when a run of it is
    still going); a failure is notified. `scheduled_at`: when the schedule had it due
    (None: by hand)."""
    job = job_of(rt, environment, name)
    going = live_runs(rt, environment, name)
    if going:
        other = going[0]
        return record_skipped(
            rt,
            environment,
            name,
            scheduled_at,
            f"run {other.id} (started {other.started_at:%Y-%m-%d %H:%M:%S} UTC) is still going",
        )
    run = rt.store.add_job_run(
        _new_run(
            environment,
            name,
            JOB_RUNNING,
            scheduled_at,
            service=job.service,
            pid=os.getpid(),
            hostname=socket.gethostname(),
        )
    )
    log(f"job {name}: run {run.id} started")
    started = time.monotonic()
    outcome = _Outcome()
    try:
        if job.backup is not None:
            await _backup(rt, environment, name, job, outcome)
        else:
            await _command(rt, environment, name, job, outcome)
    except ConveyorError as error:
        outcome.detail = error.message
    except Exception as error:  # recorded as this run's failure: the next runs go on
        outcome.detail = f"{type(error).__name__}: {error}"
    except BaseException:  # cancelled: the agent is stopping
        _finish(rt, run, outcome, time.monotonic() - started, STOPPED)
        raise
    done = _finish(rt, run, outcome, time.monotonic() - started)
    log(
        f"job {name}: run {run.id} {done.status}"
        + (f", exit {done.exit_code}" if done.exit_code is not None else "")
        + (f": {done.detail}" if done.detail else "")
        + f" ({done.duration_s:.1f}s)"
    )
    if done.status == JOB_FAILED:
        _notify(rt, done)
    return done


def _finish(
    rt: Runtime, run: JobRunRecord, outcome: _Outcome, duration: float, stopped: str = ""
) -> JobRunRecord:
    ok = not stopped and outcome.exit_code == 0 and outcome.detail is None
    values = {
        "status": JOB_SUCCEEDED if ok else JOB_FAILED,
        "finished_at": datetime.now(UTC),
        "exit_code": outcome.exit_code,
        "duration_s": round(duration, 3),
        "host": outcome.host,
        "release_id": outcome.release_id,
        "detail": stopped or outcome.detail,
        "output": tail(outcome.output, outcome.secrets) or None,
    }
    rt.store.finish_job_run(run.id, **values)
    rt.store.prune_job_runs(run.environment, run.job, KEEP_RUNS)
    done = rt.store.get_job_run(run.id)
    assert done is not None
    return done


async def _command(
    rt: Runtime, environment: str, name: str, job: ScheduledJob, outcome: _Outcome
) -> None:
    from conveyor.engine.oneoff import prepare, run_host
    from conveyor.targets.base import LOCAL_HOST

    assert job.service is not None and job.command is not None
    rt.loaded.require_set(environment, job.service)
    oneoff = prepare(rt, environment, job.service, command_argv(job.command))
    outcome.release_id = oneoff.release_id
    outcome.secrets = env_secrets(oneoff.env)
    host = run_host(rt, oneoff)
    outcome.host = host.name if host is not None else LOCAL_HOST
    log_path = rt.paths.home / "logs" / "jobs" / f"{environment}-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    result = await rt.target_for(environment).run_command(
        oneoff.argv, oneoff.release_dir, oneoff.env, job.timeout, log_path, oneoff.user
    )
    outcome.exit_code = result.exit_code
    outcome.output = result.output
    if result.timed_out:
        outcome.detail = f"timed out after {format_duration(job.timeout)}: killed"


async def _backup(
    rt: Runtime, environment: str, name: str, job: ScheduledJob, outcome: _Outcome
) -> None:
    from conveyor.databases.backups import (
        backup_target,
        prune_job_backups,
        take_backup,
        verify_backup,
    )

    assert job.backup is not None
    lines: list[str] = []
    target = backup_target(rt.loaded, rt.paths, job.backup, environment)
    outcome.host = "local"
    try:
        record = await take_backup(
            rt.store,
            target,
            user=job_user(name),
            reason=f"scheduled job {name}",
            progress=lines.append,
        )
        await verify_backup(rt.store, record, target.database(), target.verify, lines.append)
        keep = job.keep if job.keep is not None else target.keep
        pruned = prune_job_backups(rt.store, target, job_user(name), keep, {record.id})
        if pruned:
            lines.append(f"pruned {len(pruned)} older backup(s) of job {name}: {', '.join(pruned)}")
        outcome.exit_code = 0
    finally:
        outcome.output = "\n".join(lines)


def job_user(name: str) -> str:
    """Who a job's backups are `created_by`: how a backup job finds its own to prune."""
    return f"job {name}"


def _notify(rt: Runtime, run: JobRunRecord) -> None:
    from conveyor.notify.events import DeployEvent

    config = rt.loaded.config
    env = config.environments.get(run.environment)
    what = f"exit {run.exit_code}" if run.exit_code is not None else "did not run"
    last = (run.output or "").splitlines()[-1:]
    error = "; ".join([what, *([run.detail] if run.detail else []), *last])
    job = config.jobs.get(run.job)
    releases = {run.service: run.release_id} if run.service and run.release_id else {}
    rt.notifications.publish_event(
        DeployEvent(
            event="job_failed",
            project=config.project,
            environment=run.environment,
            deployment=f"job-run-{run.id}",
            kind="job",
            status=run.status,
            user=job_user(run.job),
            releases=releases,
            previous=releases,
            url=env.effective_url if env is not None else "",
            reason=redact_registered(describe_job(job)) if job is not None else None,
            error=redact_registered(error),
            job=run.job,
        )
    )


def describe_job(job: ScheduledJob) -> str:
    """What the job does, for people: `web: python manage.py clearsessions`."""
    if job.backup is not None:
        return f"backup of database {job.backup}"
    assert job.command is not None
    import shlex

    command = job.command if isinstance(job.command, str) else shlex.join(job.command)
    return f"{job.service}: {command}"
