"""`conveyor build`, `conveyor releases` and `conveyor prune`."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.context import JsonOption, YesOption, runtime
from conveyor.cli.output import confirm, emit_json, iso, local_time, progress, say, warn


def register(app: typer.Typer) -> None:
    app.command()(build)
    app.command(name="releases")(list_releases)
    app.command()(prune)


def build(
    services: list[str] | None = typer.Argument(None, help="Services to build (default: all)."),
    dirty: bool = typer.Option(False, "--dirty", help="Include uncommitted changes."),
    as_json: bool = JsonOption,
) -> None:
    """Build an immutable release of each service and print its id."""
    from conveyor.releases.builder import build_service

    rt = runtime()
    names = services or list(rt.loaded.config.services)
    results = [
        build_service(
            rt.loaded,
            rt.paths,
            rt.store,
            name,
            user=rt.user,
            dirty=dirty,
            log=progress if not as_json else lambda _: None,
        )
        for name in names
    ]
    for result in results:
        if result.warning:
            warn(result.warning)
    if as_json:
        emit_json(
            [{**release_json(r.release), "reused": r.reused, "source": r.source} for r in results]
        )
        return
    for result in results:
        note = " (unchanged, reused)" if result.reused else ""
        say(f"{result.release.service} {result.release.id}{note}")


def list_releases(
    service: str | None = typer.Argument(None, help="Only this service."),
    as_json: bool = JsonOption,
) -> None:
    """List built releases, newest first, and where each one runs."""
    from rich.table import Table

    from conveyor.cli.output import console

    rt = runtime(defer_unset=True)
    if service is not None and service not in rt.loaded.config.services:
        from conveyor.errors import UsageError

        raise UsageError(f'unknown service "{service}"')
    records = rt.store.list_releases(service)
    running: dict[tuple[str, str], list[str]] = {}
    for env in rt.loaded.config.environments:
        for svc, release in rt.store.current_releases(env).items():
            running.setdefault((svc, release), []).append(env)
    if as_json:
        emit_json(
            [
                {**release_json(r), "environments": running.get((r.service, r.id), [])}
                for r in records
            ]
        )
        return
    table = Table(box=None, pad_edge=False)
    for column in ("SERVICE", "RELEASE", "CREATED", "BY", "COMMIT", "DIGEST", "CURRENT IN"):
        table.add_column(column)
    for r in records:
        table.add_row(
            r.service,
            r.id,
            local_time(r.created_at),
            r.built_by,
            (r.git_commit or "-")[:10],
            r.digest[:12],
            ", ".join(running.get((r.service, r.id), [])) or "-",
        )
    console().print(table)


def prune(
    keep: int | None = typer.Option(
        None,
        "--keep",
        min=1,
        help="Releases to keep per service (default: releases.keep in conveyor.yml).",
    ),
    yes: bool = YesOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete old releases, keeping the newest N per service and any that is deployed."""
    from conveyor.releases.prune import plan_prune, prune_releases

    rt = runtime()
    count = keep or rt.loaded.config.releases.keep
    doomed = plan_prune(rt, count)
    if not doomed:
        if as_json:
            emit_json({"deleted": []})
        else:
            say("nothing to prune")
        return
    confirm(f"delete {len(doomed)} release(s)?", yes=yes)
    pruned = prune_releases(rt, doomed)
    if note := pruned.busy_note():
        warn(note)
    if as_json:
        emit_json(
            {
                "deleted": [{"service": r.service, "id": r.id} for r in pruned.deleted],
                "busy": pruned.busy,
                "dependencies_deleted": pruned.dependencies,
            }
        )
        return
    for r in pruned.deleted:
        say(f"deleted {r.service} {r.id}")
    for key in pruned.dependencies:
        say(f"deleted the stored dependencies {key[:12]} (no release uses them)")


def release_json(r: Any) -> dict[str, Any]:
    return {
        "service": r.service,
        "id": r.id,
        "created_at": iso(r.created_at),
        "built_by": r.built_by,
        "git_commit": r.git_commit,
        "git_commit_time": iso(r.git_commit_time),
        "digest": f"sha256:{r.digest}",
        "path": r.path,
        "build_log": r.build_log,
    }
