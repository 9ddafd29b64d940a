"""Choose and delete old releases; never one that is deployed or running."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.releases.builder import remove_release_dir
from conveyor.store.records import ReleaseRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime


def plan_prune(rt: Runtime, keep: int) -> list[ReleaseRecord]:
    """Releases beyond the newest `keep` per service that nothing uses."""
    in_use = {(i.service, i.release_id) for i in rt.store.list_instances()}
    for env in rt.loaded.config.environments:
        in_use |= set(rt.store.current_releases(env).items())
    unfinished = [rt.store.unfinished_deployment(env) for env in rt.loaded.config.environments]
    for deployment in filter(None, unfinished):
        in_use |= set(deployment.releases.items()) | set(deployment.previous.items())
    doomed: list[ReleaseRecord] = []
    for service in {r.service for r in rt.store.list_releases()}:
        for release in rt.store.list_releases(service)[keep:]:
            if (service, release.id) not in in_use:
                doomed.append(release)
    return doomed


def prune_releases(rt: Runtime, releases: list[ReleaseRecord]) -> None:
    for release in releases:
        remove_release_dir(Path(release.path))
        if release.build_log:
            Path(release.build_log).unlink(missing_ok=True)
        rt.store.delete_release(release.service, release.id)
