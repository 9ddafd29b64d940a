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
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.config import LoadedConfig, ServiceConfig, command_argv
from conveyor.errors import BuildError, ReleaseIntegrityError, UsageError
from conveyor.git import git_info
from conveyor.paths import Paths
from conveyor.releases import seal
from conveyor.releases.dependencies import dependency_key, link_tree, reusable
from conveyor.releases.digest import tree_digest
from conveyor.releases.seal import MANIFEST
from conveyor.releases.snapshot import ALWAYS_EXCLUDED, Excludes, snapshot
from conveyor.store import Store
from conveyor.store.records import ReleaseRecord

_BUILD_LOG_TAIL = 20

__all__ = ["MANIFEST", "BuildResult", "build_service", "remove_release_dir", "verify_release"]


@dataclass(frozen=True)
class BuildResult:
    """A release and whether it was built now or reused (same source, same build)."""

    release: ReleaseRecord
    reused: bool


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
    service_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock(paths, service):
        _remove_unfinished(service_dir)
        staging = service_dir / f".staging-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            return _build(loaded, paths, store, service, svc, source, staging, user, dirty, log)
        finally:
            if staging.exists():
                remove_release_dir(staging)


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
    source_digest = tree_digest(staging, extra=_recipe(svc).encode())
    existing = store.find_release_by_source(service, source_digest)
    if existing is not None and Path(existing.path).is_dir():
        changes = _changes(existing)
        if changes is None:
            log(f"{service}: source unchanged, reusing release {existing.id}")
            return BuildResult(existing, reused=True)
        log(
            f"{service}: release {existing.id} has this source but was modified after it was "
            f"built; building a new release\n{changes}"
        )

    now = datetime.now(UTC)
    final = _new_release_dir(paths.releases / service, now, source_digest)
    release_id = final.name
    # Built where it runs: a virtualenv's scripts and many build tools record their path.
    staging.rename(final)
    build_log = paths.build_logs / f"{service}-{release_id}.log"
    build_log.parent.mkdir(parents=True, exist_ok=True)
    build_log.write_text(f"# {service} {release_id}: {taken}\n")
    started = time.monotonic()
    try:
        env = _build_env(svc, service, release_id, loaded.root)
        dependencies, known = _dependencies(store, svc, service, final, env, build_log, log)
        _run_build(svc.build, final, env, build_log, service, "build", log)
        sealed = seal.record(final, svc.writable, known=known)
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
            "build_log": str(build_log),
        }
        (final / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        seal.make_read_only(final, svc.writable)
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
    return BuildResult(record, reused=False)


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
        raise ReleaseIntegrityError(
            f"release {release_id} of {service} was modified after it was built:\n{changes}",
            hint=f"if the app writes these files as it runs, list their directories under "
            f"services/{service}/writable in conveyor.yml; then `conveyor build` makes a new "
            f"release (a modified one is never reused)",
        )
    return release


def remove_release_dir(path: Path) -> None:
    """Delete a sealed release directory (files it shares with other releases stay sealed)."""
    if path.exists():
        seal.make_removable(path)
        shutil.rmtree(path)


def _changes(release: ReleaseRecord) -> str | None:
    """None when the release matches its digest, else a list of what changed."""
    path = Path(release.path)
    checked = seal.check(path, release.manifest.get("writable") or [])
    if checked.intact(release.digest):
        return None
    fallback = f"    digest {checked.digest[:12]} instead of {release.digest[:12]}"
    return checked.describe() or fallback


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
    return Excludes(patterns)


def _new_release_dir(service_dir: Path, now: datetime, source_digest: str) -> Path:
    base = f"{now:%Y%m%d%H%M%S}-{source_digest[:8]}"
    candidate, n = service_dir / base, 1
    while candidate.exists():  # the same source again within a second (a modified release)
        n += 1
        candidate = service_dir / f"{base}-{n}"
    return candidate


@contextlib.contextmanager
def _build_lock(paths: Paths, service: str) -> Iterator[None]:
    """One build of a service at a time on this machine (the others wait their turn)."""
    lock_path = paths.releases / f".build-{service}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_unfinished(service_dir: Path) -> None:
    """Remove what a killed build left (no manifest): no other build runs now."""
    for child in service_dir.iterdir():
        if child.is_dir() and not (child / MANIFEST).exists():
            remove_release_dir(child)


def _dependencies(
    store: Store,
    svc: ServiceConfig,
    service: str,
    release_dir: Path,
    env: dict[str, str],
    build_log: Path,
    log: Callable[[str], None],
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Install the dependencies, or link them from an earlier release with the same key.

    Also returns the recorded hashes of the linked files (the same inodes as the
    earlier, sealed release's), so that sealing does not read them again.
    """
    spec = svc.dependencies
    if spec is None:
        return None, {}
    started = time.monotonic()
    key = dependency_key(spec, release_dir, svc.env, service)
    candidates = (
        (Path(r.path), (r.manifest.get("dependencies") or {}).get("key"))
        for r in store.list_releases(service)
    )
    earlier = reusable(candidates, key, spec.paths)
    if earlier is not None:
        recorded = seal.file_list(earlier)
        known: dict[str, str] = {}
        for path in spec.paths:
            linked = link_tree(earlier / path, release_dir / path, str(earlier), str(release_dir))
            known.update((p, recorded[p]) for p in (f"{path}/{f}" for f in linked) if p in recorded)
        files = ", ".join(spec.files)
        log(f"{service}: {files} unchanged: dependencies linked from release {earlier.name}")
        with build_log.open("a") as out:
            out.write(f"# dependencies linked from {earlier} ({files} unchanged)\n")
        return {"key": key, "reused_from": earlier.name, "seconds": _since(started)}, known
    _run_build(spec.install, release_dir, env, build_log, service, "dependencies/install", log)
    return {"key": key, "reused_from": None, "seconds": _since(started)}, {}


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
) -> None:
    with log_path.open("ab") as out:
        for command in commands:
            argv = command_argv(command)
            log(f"{service}: $ {' '.join(argv) if isinstance(command, list) else command}")
            out.write(f"$ {command}\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
                )
            except OSError as error:
                raise BuildError(
                    f"{service}: {key} command {command!r} could not run: {error}",
                    hint=f"fix services/{service}/{key}",
                ) from error
            if done.returncode != 0:
                out.flush()
                tail = _tail(log_path, _BUILD_LOG_TAIL)
                raise BuildError(
                    f"{service}: {key} command {command!r} exited with {done.returncode}\n"
                    + "\n".join(f"    {line}" for line in tail),
                    hint=f"full build log: {log_path}",
                )


def _tail(path: Path, lines: int) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:]
