"""`conveyor pipeline run|list` and `conveyor ci export github`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.context import JsonOption, run, runtime
from conveyor.cli.output import console, emit_json, iso, local_time, progress, say

if TYPE_CHECKING:
    from rich.table import Table

    from conveyor.pipeline.runner import JobResult
    from conveyor.store.records import PipelineRunRecord

app = typer.Typer(help="Run the project's pipeline and list its runs.", no_args_is_help=True)
ci_app = typer.Typer(help="Run the pipeline on a CI service.", no_args_is_help=True)

MARKS = {"pending": "·", "running": "▶", "passed": "✓", "failed": "✗", "skipped": "-"}


@app.command("run")
def pipeline_run(
    release: str | None = typer.Option(
        None, "--release", help="Test the commit this release was built from (a fresh checkout)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run the jobs in parallel as their needs allow; exits 1 when a job fails."""
    from conveyor.pipeline.runs import run_pipeline

    rt = runtime()
    config = rt.loaded.config.pipeline
    names = list(config.jobs) if config is not None else []
    board = _Board(names, live=sys.stdout.isatty() and not as_json, quiet=as_json)
    with board:
        record = run(
            run_pipeline(
                rt.loaded,
                rt.paths,
                rt.store,
                user=rt.user,
                release_id=release,
                on_change=board.update,
            )
        )
    if as_json:
        emit_json(run_json(record))
    else:
        console().print(summary_table(record))
        for line in failed_output(record):
            say(line)
        where = f"commit {record.git_commit[:12]}" if record.git_commit else "no commit"
        if record.dirty:
            where += " with uncommitted changes (does not count for require_pipeline)"
        logs = rt.paths.pipelines / record.id
        say(f"pipeline {record.id} {record.status} ({where}); logs in {logs}")
    if record.status != "passed":
        raise typer.Exit(1)


@app.command("list")
def pipeline_list(
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs."),
    as_json: bool = JsonOption,
) -> None:
    """Pipeline runs, newest first."""
    from rich.table import Table

    rt = runtime()
    runs = rt.store.list_pipeline_runs(limit=limit)
    if as_json:
        emit_json([run_json(r) for r in runs])
        return
    if not runs:
        say("no pipeline runs yet: conveyor pipeline run")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("run", "status", "commit", "started", "by", "jobs"):
        table.add_column(column)
    for r in runs:
        commit = (r.git_commit or "-")[:12] + (" (dirty)" if r.dirty else "")
        jobs = " ".join(f"{MARKS.get(j.get('status', ''), '?')}{n}" for n, j in r.jobs.items())
        table.add_row(r.id, r.status, commit, local_time(r.started_at), r.user, jobs)
    console().print(table)


@ci_app.command("export")
def ci_export(
    service: str = typer.Argument(..., help="The CI service: github."),
    output: Path = typer.Option(
        Path(".github/workflows/conveyor.yml"), "--output", "-o", help="Where to write it."
    ),
    stdout: bool = typer.Option(False, "--stdout", help="Print it instead of writing it."),
    branch: str = typer.Option("main", "--branch", help="The branch whose pushes run it."),
) -> None:
    """Write a workflow that runs the same jobs (with their needs) and the deploys."""
    import yaml

    from conveyor.errors import UsageError
    from conveyor.pipeline.github import github_workflow

    if service != "github":
        raise UsageError(f'unknown CI service "{service}"', hint="supported: github")
    rt = runtime()
    text = (
        "# Written by `conveyor ci export github` from conveyor.yml; export again after "
        "changing the pipeline.\n"
        + yaml.safe_dump(github_workflow(rt.loaded.config, branch=branch), sort_keys=False)
    )
    if stdout:
        sys.stdout.write(text)
        return
    target = output if output.is_absolute() else rt.loaded.root / output
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    say(f"wrote {target}")


class _Board:
    """The jobs' progress: a live table on a terminal, else one line per change."""

    def __init__(self, names: list[str], *, live: bool, quiet: bool) -> None:
        self.results: dict[str, Any] = dict.fromkeys(names)
        self.started = dict.fromkeys(names, 0.0)
        self.live_enabled = live
        self.quiet = quiet
        self._live: Any = None

    def __enter__(self) -> _Board:
        if self.live_enabled:
            from rich.live import Live

            self._live = Live(
                self._table(),
                console=console(),
                refresh_per_second=4,
                transient=True,
                get_renderable=self._table,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, result: JobResult) -> None:
        if result.status == "running" and not self.started.get(result.name):
            self.started[result.name] = time.monotonic()
        self.results[result.name] = result
        if self._live is None and not self.quiet:
            detail = f": {result.reason}" if result.reason else ""
            attempt = f" (attempt {result.attempts})" if result.attempts > 1 else ""
            progress(
                f"{MARKS.get(result.status, '?')} {result.name} {result.status}{attempt}{detail}"
            )

    def _table(self) -> Table:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("", "job", "status", "time", ""):
            table.add_column(column)
        for name, result in self.results.items():
            status = result.status if result is not None else "pending"
            mark: Any = Spinner("dots") if status == "running" else MARKS.get(status, "?")
            took = (
                f"{time.monotonic() - self.started[name]:.0f}s"
                if status == "running" and self.started.get(name)
                else (
                    f"{result.duration_s:.1f}s" if result is not None and result.duration_s else ""
                )
            )
            table.add_row(mark, name, status, took, (result.reason if result else "")[:80])
        return table


def summary_table(record: PipelineRunRecord) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title=f"pipeline {record.id}: {record.status}")
    for column in ("job", "status", "tries", "time", "reports / why"):
        table.add_column(column)
    for name, job in record.jobs.items():
        notes = [r["summary"] for r in job.get("reports", [])]
        if job.get("reason"):
            notes.append(job["reason"])
        table.add_row(
            f"{MARKS.get(job.get('status', ''), '?')} {name}",
            job.get("status", ""),
            str(job.get("attempts", 0)),
            f"{job.get('duration_s', 0):.1f}s",
            "; ".join(notes),
        )
    return table


def failed_output(record: PipelineRunRecord) -> list[str]:
    """Under the summary, each failed job's last lines of output (the error is often there:
    "No module named ruff"), with where the whole log is."""
    lines: list[str] = []
    for name, job in record.jobs.items():
        tail = job.get("tail") or []
        if job.get("status") != "failed" or not tail:
            continue
        lines.append(f"{MARKS['failed']} {name}: last {len(tail)} lines of {job.get('log', '')}:")
        lines.extend(f"    {line}" for line in tail)
    return lines


def run_json(r: PipelineRunRecord) -> dict[str, Any]:
    """A pipeline run in `--json` output (documented in the README)."""
    return {
        "id": r.id,
        "status": r.status,
        "git_commit": r.git_commit,
        "dirty": r.dirty,
        "release_id": r.release_id,
        "user": r.user,
        "started_at": iso(r.started_at),
        "finished_at": iso(r.finished_at),
        "jobs": r.jobs,
    }
