"""Choose and delete old releases; never one that runs or that a rollback needs.

Kept whatever `releases.keep` says: the release each environment serves,
every release with an instance (warm ones in a rollback window included),
the releases of an unfinished deployment, the release `conveyor rollback`
would go back to in each environment, and the newest build of each service.
Beyond those, releases that never deployed successfully go first, oldest
first, then the oldest deployed ones. A virtualenv in the dependency store
goes with the last release that used it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import UsageError
from conveyor.releases import depstore
from conveyor.releases.builder import remove_release_dir
from conveyor.releases.buildlock import try_build_lock
from conveyor.store.records import SUCCEEDED, ReleaseRecord

if TYPE_CHECKING:
    from conveyor.engine.runtime import Runtime

Key = tuple[str, str]  # (service, release id)


def choose(
    releases: list[ReleaseRecord], keep: int, protected: set[Key], deployed: set[Key]
) -> list[ReleaseRecord]:
    """Which of one service's releases (newest first) to delete to keep `keep`.

    Releases e d c b a (newest first), keep 2, "a" protected, "c" deployed:
    "e" is the newest build and stays; "b" and "d" never deployed and go
    before "c" does; three must go but only those three may, so b, d, c go.
    With keep 3, b and d go. Never a protected one, even if more must stay.
    """
    excess = len(releases) - keep
    if excess <= 0:
        return []
    candidates = [r for r in releases[1:] if (r.service, r.id) not in protected]
    candidates.sort(key=lambda r: ((r.service, r.id) in deployed, r.created_at))
    return sorted(candidates[:excess], key=lambda r: r.created_at)


def plan_prune(rt: Runtime, keep: int) -> list[ReleaseRecord]:
    """Releases to delete so that each service keeps `keep` (see the module docstring)."""
    protected, deployed = _protected(rt), _deployed(rt)
    by_service: dict[str, list[ReleaseRecord]] = {}
    for release in rt.store.list_releases():  # newest first, and so is each service's list
        by_service.setdefault(release.service, []).append(release)
    doomed: list[ReleaseRecord] = []
    for service in sorted(by_service):
        doomed += choose(by_service[service], keep, protected, deployed)
    return doomed


def prune_releases(rt: Runtime, releases: Iterable[ReleaseRecord]) -> Pruned:
    """Delete `releases`, but not those of a service being built right now: that build may
    be reusing one of them or linking its dependencies (they go next time)."""
    by_service: dict[str, list[ReleaseRecord]] = {}
    for release in releases:
        by_service.setdefault(release.service, []).append(release)
    pruned = Pruned([], [], [])
    for service, doomed in by_service.items():
        with try_build_lock(rt.paths, service) as held:
            if not held:
                pruned.busy.append(service)
                continue
            for release in doomed:
                remove_release_dir(Path(release.path))
                if release.build_log:
                    Path(release.build_log).unlink(missing_ok=True)
                rt.store.delete_release(release.service, release.id)
                pruned.deleted.append(release)
    if pruned.deleted:
        pruned.dependencies.extend(_collect_dependencies(rt))
    return pruned


def _collect_dependencies(rt: Runtime) -> list[str]:
    """Delete the store's virtualenvs no release uses any more, unless a build runs (it
    may be about to link one: they go next time); returns their keys."""
    releases = rt.store.list_releases()
    services = set(rt.loaded.config.services) | {r.service for r in releases}
    with contextlib.ExitStack() as stack:
        for service in sorted(services):
            if not stack.enter_context(try_build_lock(rt.paths, service)):
                return []
        keys = {(r.manifest.get("dependencies") or {}).get("key") for r in releases}
        return depstore.collect(rt.paths, {k for k in keys if k})


@dataclass(frozen=True)
class Pruned:
    """What pruning deleted (releases, and the keys of the stored virtualenvs that went
    with the last release using them), and the services it left alone because they were
    being built."""

    deleted: list[ReleaseRecord]
    busy: list[str]
    dependencies: list[str]

    def busy_note(self) -> str | None:
        if not self.busy:
            return None
        names = ", ".join(self.busy)
        return f"kept the old releases of {names}: being built now (they go at the next prune)"


def _protected(rt: Runtime) -> set[Key]:
    from conveyor.engine.rollback import rollback_target

    protected = {(i.service, i.release_id) for i in rt.store.list_instances()}
    for env in rt.loaded.config.environments:
        protected |= set(rt.store.current_releases(env).items())
        unfinished = rt.store.unfinished_deployment(env)
        if unfinished is not None:
            protected |= set(unfinished.releases.items()) | set(unfinished.previous.items())
        with contextlib.suppress(UsageError):  # nothing to roll back to
            protected |= set(rollback_target(rt, env, []).items())
    return protected


def _deployed(rt: Runtime) -> set[Key]:
    return {
        item
        for deployment in rt.store.list_deployments()
        if deployment.status == SUCCEEDED
        for item in deployment.releases.items()
    }
