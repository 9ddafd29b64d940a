"""Running the pipeline: jobs in parallel as their `needs` allow, with retries, timeouts,
per-job logs and reports.

A job passes when its command exits 0 within its timeout and every report it
declares reads and passes its gate; otherwise it is tried again up to
`retries` more times, then fails, and every job that needs it (directly or
not) is skipped. Jobs run with the deployer's environment plus their `env`:
the pipeline is CI, run by a developer or a runner, not an app.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.config import command_argv
from conveyor.config.models import JobConfig, PipelineConfig
from conveyor.pipeline.graph import blocked_by, ready
from conveyor.pipeline.reports import ReportError, ReportResult, read_report
from conveyor.printable import printable

PENDING = "pending"
RUNNING = "running"
PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass
class JobResult:
    """What became of one job (the JSON of a pipeline run keeps these)."""

    name: str
    status: str = PENDING
    attempts: int = 0
    exit_code: int | None = None
    duration_s: float = 0.0
    started_at: str | None = None
    reason: str = ""  # why it failed or was skipped
    reports: list[dict[str, Any]] = field(default_factory=list)
    log: str = ""
    tail: list[str] = field(default_factory=list)  # a failed job's last lines of output

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


Listener = Callable[[JobResult], None]


class PipelineRunner:
    """Runs a pipeline's jobs in `root` (each in its `workdir`), logging to `logs`."""

    def __init__(
        self,
        config: PipelineConfig,
        root: Path,
        logs: Path,
        env: Mapping[str, str] | None = None,
        on_change: Listener | None = None,
    ) -> None:
        self.config = config
        self.root = root
        self.logs = logs
        self.env = dict(env or {})
        self.on_change = on_change or (lambda _: None)
        self.results = {name: JobResult(name) for name in config.jobs}

    @property
    def needs(self) -> dict[str, list[str]]:
        return {name: list(job.needs) for name, job in self.config.jobs.items()}

    async def run(self) -> dict[str, JobResult]:
        """Run every job that can run; returns the results by job name."""
        self.logs.mkdir(parents=True, exist_ok=True)
        running: dict[asyncio.Task[None], str] = {}
        try:
            while True:
                self._skip_blocked()
                passed = {n for n, r in self.results.items() if r.status == PASSED}
                settled = {n for n, r in self.results.items() if r.status != PENDING}
                for name in ready(self.needs, passed, settled):
                    if len(running) >= self.config.parallel:
                        break
                    result = self.results[name]
                    result.status = RUNNING
                    result.started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    self.on_change(result)
                    running[asyncio.create_task(self._job(name))] = name
                if not running:
                    return self.results
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    task.result()
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _skip_blocked(self) -> None:
        failed = {n for n, r in self.results.items() if r.status == FAILED}
        for name, cause in blocked_by(self.needs, failed).items():
            result = self.results[name]
            if result.status == PENDING:
                result.status = SKIPPED
                result.reason = f"needs {cause}, which failed"
                self.on_change(result)

    async def _job(self, name: str) -> None:
        job = self.config.jobs[name]
        result = self.results[name]
        log = self.logs / f"{name}.log"
        result.log = str(log)
        workdir = self.root / job.workdir
        started = time.monotonic()
        with log.open("wb") as out:
            for attempt in range(1, job.retries + 2):
                result.attempts = attempt
                out.write(f"--- attempt {attempt}: {_shown(job)}\n".encode())
                out.flush()
                begin = os.lseek(out.fileno(), 0, os.SEEK_CUR)  # where the command's output starts
                code, why = await self._attempt(name, job, workdir, out)
                result.exit_code = code
                reports, report_problem = self._reports(job, workdir)
                result.reports = [r.to_dict() for r in reports]
                problem = "; ".join(p for p in (why, report_problem) if p)
                result.tail = _output_tail(log, begin) if problem else []
                if not problem:
                    result.status, result.reason = PASSED, ""
                    break
                result.status, result.reason = FAILED, problem
                out.write(f"--- attempt {attempt} failed: {problem}\n".encode())
                out.flush()
                if attempt <= job.retries:
                    self.on_change(result)  # still running: one more attempt
        result.duration_s = round(time.monotonic() - started, 3)
        self.on_change(result)

    async def _attempt(
        self, name: str, job: JobConfig, workdir: Path, out: Any
    ) -> tuple[int | None, str]:
        """(exit code, why it failed or "") for one run of the job's command."""
        env = {**os.environ, **self.env, **job.env, "CONVEYOR_JOB": name}
        try:
            proc = await asyncio.create_subprocess_exec(
                *command_argv(job.run),
                cwd=workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a timeout kills the whole process group
            )
        except OSError as exc:
            return None, f"cannot run it in {workdir}: {exc.strerror or exc}"
        try:
            code = await asyncio.wait_for(proc.wait(), job.timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            return None, f"timed out after {job.timeout:g} s"
        except BaseException:
            _kill_group(proc.pid)
            raise
        return code, "" if code == 0 else f"exited {code}"

    def _reports(self, job: JobConfig, workdir: Path) -> tuple[list[ReportResult], str]:
        results: list[ReportResult] = []
        problems: list[str] = []
        for report in job.reports:
            try:
                result = read_report(report, workdir)
            except ReportError as error:
                problems.append(str(error))
                continue
            results.append(result)
            if not result.ok:
                problems.append(f"{result.path}: {result.summary}")
        return results, "; ".join(problems)


def overall(results: Mapping[str, JobResult]) -> str:
    """ "passed" when every job passed, else "failed"."""
    return PASSED if all(r.status == PASSED for r in results.values()) else FAILED


TAIL_LINES = 10
_TAIL_BYTES = 64 * 1024  # enough for 10 lines of any sane output


def _output_tail(log: Path, begin: int) -> list[str]:
    """The last `TAIL_LINES` non-blank lines one attempt wrote to `log` after `begin`."""
    with log.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(begin, end - _TAIL_BYTES))
        text = f.read().decode("utf-8", errors="replace")
    lines = [shown for line in text.splitlines() if (shown := printable(line).rstrip())]
    return lines[-TAIL_LINES:]


def _shown(job: JobConfig) -> str:
    return job.run if isinstance(job.run, str) else " ".join(job.run)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
