"""The agent's scheduler: APScheduler's `AsyncIOScheduler` running an environment's jobs.

Each job of `jobs:` is an APScheduler job with its trigger (`conveyor.agent.schedule`),
`max_instances=1` and `coalesce=True`: a run due while the previous one still goes is
not started but recorded as skipped (APScheduler's EVENT_JOB_MAX_INSTANCES), and runs
that piled up (a busy machine) become one. A run later than `MISFIRE_GRACE_S` is
missed, and recorded as skipped too.

Runs missed while the agent was down (a deploy replacing it, a reboot): at start, a
cron job whose latest due time is within `MISFIRE_GRACE_S` and that has no run since
then runs once, at once; older ones are not made up, as with cron. `every:` jobs count
their interval from the agent's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.agent import runs
from conveyor.agent.schedule import missed, trigger
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from apscheduler.events import JobExecutionEvent, JobSubmissionEvent

    from conveyor.engine.runtime import Runtime
    from conveyor.monitors.runner import MonitorRunner

MISFIRE_GRACE_S = 600.0


class JobScheduler:
    """Runs the jobs of one environment on their schedules until `stop`."""

    def __init__(self, rt: Runtime, environment: str, log: Callable[[str], None]) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.rt = rt
        self.environment = environment
        self.log = log
        self.jobs = rt.loaded.config.jobs_for(environment)
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "max_instances": 1,
                "coalesce": True,
                "misfire_grace_time": int(MISFIRE_GRACE_S),
            },
        )
        self._running: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        self.scheduler.add_listener(self._not_run, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        for name, job in self.jobs.items():
            self.scheduler.add_job(
                self._due,
                trigger(job.schedule, job.every, job.timezone),
                args=[name],
                id=name,
                name=name,
            )
        self.scheduler.start()
        for entry in self.scheduler.get_jobs():
            self.log(f"job {entry.id}: next run at {_utc(entry.next_run_time)}")
        for name in self._missed_while_down(datetime.now(UTC)):
            self.log(f"job {name}: its last run was due while the agent was down: running it now")
            self.scheduler.modify_job(name, next_run_time=datetime.now(UTC))

    async def stop(self) -> None:
        """Stop scheduling; runs under way are cancelled (their commands killed) and
        recorded as failed: the agent stopped while they ran."""
        self.scheduler.shutdown(wait=False)
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.wait(set(self._running), timeout=10.0)
        await self.rt.notifications.drain(timeout=3.0)

    def _missed_while_down(self, now: datetime) -> list[str]:
        found = []
        for name, job in self.jobs.items():
            last = self.rt.store.list_job_runs(self.environment, name, limit=1)
            start = last[0].started_at if last else None
            if missed(job.schedule, job.every, job.timezone, now, MISFIRE_GRACE_S, start):
                found.append(name)
        return found

    async def _due(self, name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            # Its notification goes out in the background: a slow receiver must not
            # hold the job (its next runs would be skipped as overlapping).
            await runs.run_job(
                self.rt, self.environment, name, scheduled_at=datetime.now(UTC), log=self.log
            )
        except Exception as error:  # one job's trouble must not stop the others
            self.log(f"job {name}: {type(error).__name__}: {error}")
        finally:
            self._running.discard(task)

    def _not_run(self, event: JobSubmissionEvent | JobExecutionEvent) -> None:
        """A run APScheduler did not start: the previous run still goes, or it is too late."""
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES

        due = getattr(event, "scheduled_run_times", None) or [event.scheduled_run_time]
        if event.code == EVENT_JOB_MAX_INSTANCES:
            detail = "the previous run was still going"
        else:
            detail = f"more than {MISFIRE_GRACE_S:g}s late (the machine was busy or asleep)"
        runs.record_skipped(self.rt, self.environment, event.job_id, due[-1], detail)
        self.log(f"job {event.job_id}: run due at {_utc(due[-1])} skipped: {detail}")


def _utc(when: datetime | None) -> str:
    return "never" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@contextlib.contextmanager
def only_agent(rt: Runtime, environment: str) -> Iterator[None]:
    """Hold the environment's agent lock (an `flock` the kernel drops when the process
    ends): a second agent of the environment, started by hand, refuses to run."""
    path = rt.paths.home / f"agent-{environment}.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConveyorError(
                f"the agent of {environment} runs already",
                hint=f"conveyor jobs {environment} shows it; deploys start and stop it",
            ) from None
        yield


async def serve(rt: Runtime, environment: str, log: Callable[[str], None]) -> None:
    """The agent's main loop: schedule the jobs, and return after SIGTERM or SIGINT."""
    with only_agent(rt, environment):
        await _serve(rt, environment, log)


async def _serve(rt: Runtime, environment: str, log: Callable[[str], None]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    scheduler = JobScheduler(rt, environment, log)
    scheduler.start()
    log(f"agent of {environment}: {len(scheduler.jobs)} job(s) scheduled")
    monitors = _monitors(rt, environment, log)
    await stopping.wait()
    log(f"agent of {environment}: stopping")
    if monitors is not None:
        await monitors.stop()
    await scheduler.stop()


def _monitors(rt: Runtime, environment: str, log: Callable[[str], None]) -> MonitorRunner | None:
    """The environment's monitors, started (None when it has none)."""
    from conveyor.monitors.runner import MonitorRunner, monitors_of

    if monitors_of(rt, environment) is None:
        return None
    runner = MonitorRunner(rt, environment, log)
    runner.start()
    return runner
