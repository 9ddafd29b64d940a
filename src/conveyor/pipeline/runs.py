"""Pipeline runs as the project sees them: where they run, what they are recorded against,
and whether a release passed one (`require_pipeline`)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import UsageError
from conveyor.git import export_commit, git_info, is_dirty
from conveyor.pipeline.runner import JobResult, PipelineRunner, overall
from conveyor.store.records import PipelineRunRecord, ReleaseRecord

if TYPE_CHECKING:
    from conveyor.config import LoadedConfig
    from conveyor.paths import Paths
    from conveyor.store import Store

RUNNING = "running"


@dataclass(frozen=True)
class Workspace:
    """Where a run runs: the project's working tree, or a checkout of a release's commit."""

    root: Path
    git_commit: str | None
    dirty: bool
    release_id: str | None = None
    checkout: Path | None = None  # removed after the run


def find_release(store: Store, loaded: LoadedConfig, release_id: str) -> ReleaseRecord:
    for service in loaded.config.services:
        record = store.get_release(service, release_id)
        if record is not None:
            return record
    raise UsageError(f'unknown release "{release_id}"', hint="list them with: conveyor releases")


def workspace(
    loaded: LoadedConfig, paths: Paths, store: Store, run_id: str, release_id: str | None
) -> Workspace:
    """The project's working tree, or with `release_id` a fresh checkout of the commit the
    release was built from (so the pipeline tests exactly that source)."""
    git = git_info(loaded.root)
    if release_id is None:
        return Workspace(
            root=loaded.root,
            git_commit=git.commit if git else None,
            dirty=git is None or is_dirty(loaded.root),
        )
    release = find_release(store, loaded, release_id)
    if release.git_commit is None or release.manifest.get("dirty") or git is None:
        raise UsageError(
            f"release {release_id} was built from uncommitted changes (or outside git): "
            "there is no commit to check out and test",
            hint="commit, build again, and run the pipeline for that release",
        )
    checkout = paths.pipelines / run_id / "checkout"
    try:
        export_commit(git.toplevel, release.git_commit, checkout)
    except ValueError as exc:
        raise UsageError(
            f"cannot check out commit {release.git_commit[:12]} of release {release_id}: {exc}"
        ) from None
    relative = loaded.root.resolve().relative_to(git.toplevel.resolve())
    return Workspace(checkout / relative, release.git_commit, False, release_id, checkout)


async def run_pipeline(
    loaded: LoadedConfig,
    paths: Paths,
    store: Store,
    *,
    user: str,
    release_id: str | None = None,
    on_change: Callable[[JobResult], None] | None = None,
) -> PipelineRunRecord:
    """Run the project's pipeline and record it; returns the finished run."""
    config = loaded.config.pipeline
    if config is None:
        raise UsageError("conveyor.yml has no pipeline:", hint="declare jobs under pipeline: jobs:")
    run_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    where = workspace(loaded, paths, store, run_id, release_id)
    record = PipelineRunRecord(
        id=run_id,
        status=RUNNING,
        started_at=datetime.now(UTC),
        user=user,
        git_commit=where.git_commit,
        dirty=where.dirty,
        release_id=where.release_id,
    )
    store.add_pipeline_run(record)

    def changed(result: JobResult) -> None:
        store.update_pipeline_run(run_id, jobs={n: r.to_dict() for n, r in runner.results.items()})
        if on_change is not None:
            on_change(result)

    runner = PipelineRunner(
        config,
        where.root,
        paths.pipelines / run_id / "logs",
        env={"CONVEYOR_PIPELINE_RUN": run_id, "CONVEYOR_GIT_COMMIT": where.git_commit or ""},
        on_change=changed,
    )
    try:
        results = await runner.run()
    finally:
        if where.checkout is not None:
            shutil.rmtree(where.checkout, ignore_errors=True)
    status = overall(results)
    store.update_pipeline_run(
        run_id,
        jobs={n: r.to_dict() for n, r in results.items()},
        status=status,
        finished_at=datetime.now(UTC),
    )
    store.add_event(
        "pipeline",
        f"pipeline {run_id} {status} ({where.git_commit or 'no commit'}"
        f"{', uncommitted changes' if where.dirty else ''}) by {user}",
        None,
        None,
        {"run": run_id, "status": status},
    )
    done = store.get_pipeline_run(run_id)
    assert done is not None
    return done


def pipeline_problem(store: Store, release: ReleaseRecord) -> str | None:
    """Why `release` has not passed the pipeline, or None when it has: a passed run on a
    clean tree at the commit it was built from (or a passed run for the release itself)."""
    if release.manifest.get("dirty") or release.git_commit is None:
        return (
            f"{release.service} {release.id} was built from uncommitted changes, which no "
            "pipeline run tested"
        )
    runs = store.list_pipeline_runs(release.git_commit)
    if any(r.status == "passed" and not r.dirty for r in runs):
        return None
    commit = release.git_commit[:12]
    if not runs:
        return f"{release.service} {release.id}: commit {commit} has no pipeline run"
    latest = runs[0]
    if latest.status == "passed":
        return (
            f"{release.service} {release.id}: the pipeline passed at commit {commit} only with "
            "uncommitted changes in the tree"
        )
    failing = [n for n, j in latest.jobs.items() if j.get("status") in ("failed", "skipped")]
    return (
        f"{release.service} {release.id}: the last pipeline run at commit {commit} "
        f"({latest.id}) {latest.status}" + (f": {', '.join(failing)}" if failing else "")
    )
