"""Build immutable releases: snapshot the source, run the build, seal the tree.

A release directory holds the service's git-tracked files at HEAD (or the
working tree with `--dirty`), its dependencies, the output of its build
commands and a manifest. It is built where it will run (a virtualenv's
scripts name their own path), outside the project tree (tools that look in
parent directories for a lock file or a repository must not find the
project), one build of a service at a time. Its sha256 tree digest is
recorded at build time and checked again before any instance of it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.config import LoadedConfig, ServiceConfig, command_argv
from conveyor.errors import BuildError, ReleaseIntegrityError, UsageError
from conveyor.git import git_info
from conveyor.paths import Paths, make_dir, passable_mode
from conveyor.printable import printable
from conveyor.releases import buildcache, depstore, seal
from conveyor.releases.buildlock import build_lock
from conveyor.releases.dedupe import link_unchanged
from conveyor.releases.dependencies import dependency_key, link_tree, reusable
from conveyor.releases.digest import tree_digest
from conveyor.releases.relocate import relocatable_scripts
from conveyor.releases.seal import MANIFEST
from conveyor.releases.snapshot import ALWAYS_EXCLUDED, Excludes, snapshot
from conveyor.runas import open_release, run_user
from conveyor.store import Store, space
from conveyor.store.records import ReleaseRecord

_BUILD_LOG_TAIL = 20

__all__ = ["MANIFEST", "BuildResult", "build_service", "remove_release_dir", "verify_release"]


@dataclass(frozen=True)
class BuildResult:
    """A release, whether it was built now or reused (same source, same build), what source
    was taken, and a warning for the user about that source (outside a git repository)."""

    release: ReleaseRecord
    reused: bool
    source: str
    warning: str | None = None


def build_service(
    loaded: LoadedConfig,
    paths: Paths,
    store: Store,
    service: str,
    *,
    user: str,
    dirty: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> BuildResult:
    """Build (or reuse) the release of `service` for the current source."""
    if service not in loaded.config.services:
        known = ", ".join(loaded.config.services)
        raise UsageError(f'unknown service "{service}" (services are: {known})')
    svc = loaded.config.services[service]
    source = (loaded.root / svc.source).resolve()
    if not source.is_dir():
        raise BuildError(
            f"services/{service}/source: directory {source} does not exist",
            hint=f"fix services/{service}/source in {loaded.path}",
        )
    service_dir = paths.releases / service
    what = f"building {service}"
    space.ensure_free(paths.releases, space.MARGIN_BYTES, what, paths.home)
    try:
        make_dir(service_dir, passable_mode())
        with build_lock(paths, service, user=user, log=log):
            _remove_unfinished(service_dir)
            staging = service_dir / f".staging-{secrets.token_hex(4)}"
            staging.mkdir()
            try:
                return _build(loaded, paths, store, service, svc, source, staging, user, dirty, log)
            finally:
                if staging.exists():
                    remove_release_dir(staging)
    except OSError as exc:
        if space.is_disk_full(exc):
            raise space.disk_full_error(service_dir, f"build {service}", paths.home) from None
        raise


def _ensure_room_for_build(service: str, staging: Path, paths: Paths) -> None:
    """Refuse a build that would not fit: its outputs are estimated at the size of its
    source again (a compiled tree, a bundle), plus the margin every write needs."""
    source_bytes = sum(f.lstat().st_size for f in staging.rglob("*") if not f.is_dir())
    needed = source_bytes + space.MARGIN_BYTES
    space.ensure_free(staging, needed, f"building {service}", paths.home)


def _build(
    loaded: LoadedConfig,
    paths: Paths,
    store: Store,
    service: str,
    svc: ServiceConfig,
    source: Path,
    staging: Path,
    user: str,
    dirty: bool,
    log: Callable[[str], None],
) -> BuildResult:
    git = git_info(loaded.root)
    taken = snapshot(
        git,
        source,
        staging,
        dirty=dirty,
        excluded=_excludes(loaded, svc, source),
        includes=[(loaded.root / extra).resolve() for extra in svc.include],
    )
    warning = None if git is not None else _not_git(service, source)
    _ensure_room_for_build(service, staging, paths)
    source_digest = tree_digest(staging, extra=_recipe(svc).encode())
    existing = store.find_release_by_source(service, source_digest)
    reinstall = False  # the stored virtualenv it links was changed: install it again
    if existing is not None and Path(existing.path).is_dir():
        changes = _changes(existing)
        if changes is None:
            log(f"{service}: source unchanged, reusing release {existing.id}")
            return BuildResult(existing, reused=True, source=taken, warning=warning)
        reinstall = bool(depstore.shared_in(existing.manifest))
        log(
            f"{service}: release {existing.id} has this source but was modified after it was "
            f"built; building a new release\n{changes}"
        )

    now = datetime.now(UTC)
    service_dir = paths.releases / service
    # Unique on disk and in the store (a release row may outlive its directory).
    release_id = new_release_id(
        now,
        source_digest,
        lambda id_: (service_dir / id_).exists() or store.get_release(service, id_) is not None,
    )
    final = service_dir / release_id
    # Built where it runs: a virtualenv's scripts and many build tools record their path.
    staging.rename(final)
    build_log = paths.build_logs / f"{service}-{release_id}.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    build_log.write_text(f"# {service} {release_id}: {taken}\n")
    started = time.monotonic()
    try:
        env = _build_env(svc, service, release_id, loaded.root)
        dependencies, linked_from, linked, shared = _dependencies(
            store, paths, svc, service, final, env, build_log, log, reinstall=reinstall
        )
        buildcache.restore(paths, service, svc.build_cache, final, log)
        commands_started = time.monotonic()
        protect = depstore.store_root(paths) if shared is not None else None
        _run_build(svc.build, final, env, build_log, service, "build", log, read_only=protect)
        commands_seconds = _since(commands_started)
        buildcache.save(paths, service, svc.build_cache, final, log)
        relocatable_scripts(final)  # the release runs from another directory on a host
        follow, stored = _share_dependencies(paths, svc, final, dependencies)
        sealed = seal.record(
            final, svc.writable, earlier=linked_from, linked=linked, follow=follow, stored=stored
        )
        unchanged = _link_unchanged(store, service, final, sealed)
        manifest: dict[str, Any] = {
            "service": service,
            "release": release_id,
            "git_commit": git.commit if git else None,
            "git_commit_time": git.commit_time.isoformat() if git else None,
            "dirty": dirty or git is None,
            "source": taken,
            "created_at": now.isoformat(),
            "built_by": user,
            "digest": f"sha256:{sealed.digest}",
            "source_digest": f"sha256:{source_digest}",
            "files": sealed.files,
            "writable": list(svc.writable),
            "dependencies": dependencies,
            "build_commands": [command_argv(c) for c in svc.build],
            "build_seconds": _since(started),
            "build_commands_seconds": commands_seconds,
            "unchanged_files": unchanged,
            "build_log": str(build_log),
        }
        (final / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        seal.make_read_only(final, svc.writable, sealed=sealed.shared)
        open_release(final, svc.writable, run_user(svc.run_as))
        record = ReleaseRecord(
            id=release_id,
            service=service,
            path=str(final),
            digest=sealed.digest,
            source_digest=source_digest,
            created_at=now,
            built_by=user,
            git_commit=git.commit if git else None,
            git_commit_time=git.commit_time if git else None,
            build_log=str(build_log),
            manifest=manifest,
        )
        store.add_release(record)
    except BaseException:
        remove_release_dir(final)
        raise
    log(f"{service}: built release {release_id} ({sealed.digest[:12]}) from {taken}")
    return BuildResult(record, reused=False, source=taken, warning=warning)


def verify_release(store: Store, paths: Paths, service: str, release_id: str) -> ReleaseRecord:
    """Check a release still matches its recorded digest; raise if it does not."""
    release = store.get_release(service, release_id)
    if release is None:
        raise UsageError(
            f'release "{release_id}" of service "{service}" does not exist',
            hint=f"list releases with: conveyor releases {service}",
        )
    path = Path(release.path)
    if not path.is_dir():
        raise ReleaseIntegrityError(
            f"release {release_id} of {service}: directory {path} is missing",
            hint="build a new release with: conveyor build",
        )
    changes = _changes(release)
    if changes is not None:
        hint = (
            f"if the app writes these files as it runs, list their directories under "
            f"services/{service}/writable in conveyor.yml; then `conveyor build` makes a new "
            f"release (a modified one is never reused)"
        )
        if any(f": {path}/" in changes for path in depstore.shared_in(release.manifest)):
            hint = (
                "the virtualenv shared by the releases with these requirements (in the "
                "dependency store) was changed after it was stored (a python run there as "
                "root without PYTHONDONTWRITEBYTECODE writes bytecode caches): `conveyor "
                "build` installs it again"
            )
        raise ReleaseIntegrityError(
            f"release {release_id} of {service} was modified after it was built:\n{changes}",
            hint=hint,
        )
    return release


def remove_release_dir(path: Path) -> None:
    """Delete a sealed release directory (files it shares with other releases stay sealed)."""
    seal.remove(path)


def _changes(release: ReleaseRecord) -> str | None:
    """None when the release matches its digest, else a list of what changed."""
    path = Path(release.path)
    checked = seal.check(
        path, release.manifest.get("writable") or [], follow=depstore.shared_in(release.manifest)
    )
    if checked.intact(release.digest):
        return None
    fallback = f"    digest {checked.digest[:12]} instead of {release.digest[:12]}"
    return checked.describe() or fallback


def _not_git(service: str, source: Path) -> str:
    return (
        f"{service}: source: working directory {source} (not a git repository): the release "
        "holds its files as they are now and is tied to no commit; to build what is "
        "committed instead: git init && git add -A && git commit"
    )


def _recipe(svc: ServiceConfig) -> str:
    """What, besides the source, makes the release: a different one is a different release."""
    recipe: dict[str, Any] = {"build": [command_argv(c) for c in svc.build]}
    if svc.env:
        recipe["env"] = svc.env  # the build sees them (NEXT_PUBLIC_* ends up in the bundle)
    if svc.dependencies is not None:
        recipe["dependencies"] = svc.dependencies.model_dump(mode="json")
    if svc.writable:
        recipe["writable"] = svc.writable
    return json.dumps(recipe, sort_keys=True)


def _excludes(loaded: LoadedConfig, svc: ServiceConfig, source: Path) -> Excludes:
    patterns = [*ALWAYS_EXCLUDED, *svc.exclude]
    with contextlib.suppress(ValueError):  # the config file, when it is in the source
        patterns.append("/" + loaded.path.resolve().relative_to(source).as_posix())
    for env in loaded.config.environments.values():  # a `tls:` key never enters a release
        if env.tls is not None:
            with contextlib.suppress(ValueError):
                key = (loaded.root / env.tls.key).resolve()
                patterns.append("/" + key.relative_to(source.resolve()).as_posix())
    return Excludes(patterns)


def new_release_id(now: datetime, source_digest: str, taken: Callable[[str], bool]) -> str:
    """`<UTC second>-<source digest prefix>`, then `-2`, `-3`... while `taken` says the id
    is used (the same source again within a second: a modified release rebuilt)."""
    base = f"{now:%Y%m%d%H%M%S}-{source_digest[:8]}"
    candidate, n = base, 1
    while taken(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _remove_unfinished(service_dir: Path) -> None:
    """Remove what a killed build left (no manifest): no other build runs now."""
    for child in service_dir.iterdir():
        if child.is_dir() and not (child / MANIFEST).exists():
            remove_release_dir(child)


def _dependencies(
    store: Store,
    paths: Paths,
    svc: ServiceConfig,
    service: str,
    release_dir: Path,
    env: dict[str, str],
    build_log: Path,
    log: Callable[[str], None],
    *,
    reinstall: bool = False,
) -> tuple[dict[str, Any] | None, Path | None, dict[str, int], Path | None]:
    """Install the dependencies, or link them from the store or an earlier release with
    the same key.

    Also returns that earlier release and the files linked from it (relative
    paths and inodes), so that sealing takes their recorded hashes instead of reading them,
    and the store's tree when the release links to it (read-only for `build:`).
    `reinstall`: install anew, and replace the store's tree (it was changed).
    """
    spec = svc.dependencies
    if spec is None:
        return None, None, {}, None
    started = time.monotonic()
    key = dependency_key(spec, release_dir, svc.env, service)
    # The service's own releases first, then those of the other services: a web service
    # and its workers built from one code base (Django and Celery) share one install.
    releases = sorted(store.list_releases(), key=lambda r: r.service != service)
    candidates = (
        (Path(r.path), (r.manifest.get("dependencies") or {}).get("key")) for r in releases
    )
    earlier = None if reinstall else reusable(candidates, key, spec.paths)
    if earlier is not None:
        linked: dict[str, int] = {}
        tree = depstore.stored_tree(paths, key)
        keep_own = tree is not None and not depstore.protectable()
        if keep_own:
            tree = None  # hard links: a build command may replace a file of its own
        for path in spec.paths:
            if tree is not None and (tree / path).is_dir():
                depstore.link(tree, release_dir, [path])
                continue
            files = link_tree(earlier / path, release_dir / path, str(earlier), str(release_dir))
            linked.update((f"{path}/{f}", inode) for f, inode in files.items())
        names = ", ".join(spec.files)
        owner = next(r.service for r in releases if Path(r.path) == earlier)
        of = "" if owner == service else f" of {owner}"
        log(f"{service}: {names} unchanged: dependencies linked from release {earlier.name}{of}")
        with build_log.open("a") as out:
            out.write(f"# dependencies linked from {earlier} ({names} unchanged)\n")
        reused = {
            "key": key,
            "reused_from": earlier.name,
            "reused_from_service": owner,
            "seconds": _since(started),
        }
        if keep_own:
            reused["shareable"] = False
        return reused, earlier, linked, tree
    if reinstall:
        log(f"{service}: the stored dependencies were changed after they were stored: installing")
    _run_build(spec.install, release_dir, env, build_log, service, "dependencies/install", log)
    installed = {"key": key, "reused_from": None, "seconds": _since(started)}
    if reinstall:
        installed["replace"] = True
    return installed, None, {}, None


def _share_dependencies(
    paths: Paths, svc: ServiceConfig, release_dir: Path, dependencies: dict[str, Any] | None
) -> tuple[list[str], Path | None]:
    """Hand the release's installed virtualenvs to the store (see `depstore`); returns the
    dependency paths that are links into it and the store's tree."""
    if svc.dependencies is None or dependencies is None:
        return [], None
    key = dependencies["key"]
    if dependencies.pop("shareable", True):  # False: hard links, a build may have changed
        installed = [p for p in svc.dependencies.paths if depstore.shareable(release_dir, p)]
        if installed:
            replace = bool(dependencies.pop("replace", False))
            depstore.adopt(paths, key, release_dir, installed, replace=replace)
    follow = depstore.shared_paths(paths, release_dir, svc.dependencies.paths)
    dependencies["shared"] = follow
    return follow, depstore.stored_tree(paths, key) if follow else None


def _link_unchanged(
    store: Store, service: str, release_dir: Path, sealed: seal.Sealed
) -> dict[str, Any] | None:
    """Link the files that are the same as the newest earlier release's (see `dedupe`)."""
    for release in store.list_releases(service):
        earlier = Path(release.path)
        if earlier != release_dir and earlier.is_dir():
            shared = link_unchanged(release_dir, earlier, sealed.own, seal.file_list(earlier))
            return {"linked_from": release.id, "bytes": shared}
    return None


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


# -- build -----------------------------------------------------------------------------


def _build_env(svc: ServiceConfig, service: str, release_id: str, root: Path) -> dict[str, str]:
    return {
        **os.environ,
        **svc.env,
        "CONVEYOR_SERVICE": service,
        "CONVEYOR_RELEASE": release_id,
        "CONVEYOR_PROJECT_ROOT": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run_build(
    commands: list[str | list[str]],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    service: str,
    key: str,
    log: Callable[[str], None],
    *,
    read_only: Path | None = None,
) -> None:
    with log_path.open("ab") as out:
        for command in commands:
            argv = command_argv(command)
            log(f"{service}: $ {' '.join(argv) if isinstance(command, list) else command}")
            out.write(f"$ {command}\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    argv if read_only is None else depstore.protected_argv(read_only, argv),
                    cwd=cwd,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            except OSError as error:
                raise BuildError(
                    f"{service}: {key} command {command!r} could not run: {error}",
                    hint=f"fix services/{service}/{key}",
                ) from error
            if done.returncode != 0:
                with contextlib.suppress(OSError):  # a full disk: the log may lack its end
                    out.flush()
                tail = _tail(log_path, _BUILD_LOG_TAIL)
                hint = f"full build log: {log_path}"
                if read_only is not None:
                    hint = (
                        f"the installed dependencies are shared with other releases and "
                        f"read-only while `build:` runs: a command that changes them belongs "
                        f"in services/{service}/dependencies/install; {hint}"
                    )
                if space.free_bytes(cwd) < space.LOW_WATER_BYTES:
                    full = space.disk_full_error(cwd, f"{key} {service}", log_path.parents[2])
                    hint = f"{full.message}; {full.hint}; {hint}"
                raise BuildError(
                    f"{service}: {key} command {command!r} exited with {done.returncode}\n"
                    + "\n".join(f"    {line}" for line in tail),
                    hint=hint,
                )


def _tail(path: Path, lines: int) -> list[str]:
    return [printable(line) for line in path.read_text(errors="replace").splitlines()[-lines:]]
