"""Build immutable releases: snapshot the source, run the build, seal the tree.

A release directory holds the service's git-tracked files at HEAD (or the
working tree with `--dirty`), the output of its build commands and a manifest.
Its sha256 tree digest is recorded at build time and checked again before any
instance of it starts, so a release that changed on disk is never deployed.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from conveyor.config import LoadedConfig, command_argv
from conveyor.errors import BuildError, ReleaseIntegrityError, UsageError
from conveyor.git import GitInfo, git_info
from conveyor.git import git as run_git
from conveyor.paths import Paths
from conveyor.releases.digest import tree_digest
from conveyor.store import Store
from conveyor.store.records import ReleaseRecord

MANIFEST = "conveyor-release.json"
_SKIP_DIRS = {".git", ".conveyor", "__pycache__", ".venv", "node_modules", ".mypy_cache"}
_BUILD_LOG_TAIL = 20


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
    staging = service_dir / f".staging-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        git = git_info(loaded.root)
        if git is not None and not dirty:
            _export_git(git, source, staging)
            for extra in svc.include:
                _export_git_file(git, (loaded.root / extra).resolve(), staging / Path(extra).name)
        else:
            files = _worktree_files(git, source)
            _copy_files(source, files, staging)
            for extra in svc.include:
                path = (loaded.root / extra).resolve()
                if path.is_file():
                    shutil.copy2(path, staging / Path(extra).name)
        recipe = json.dumps({"build": [command_argv(c) for c in svc.build]}, sort_keys=True)
        source_digest = tree_digest(staging, extra=recipe.encode())
        existing = store.find_release_by_source(service, source_digest)
        if existing is not None and Path(existing.path).is_dir():
            shutil.rmtree(staging)
            log(f"{service}: source unchanged, reusing release {existing.id}")
            return BuildResult(existing, reused=True)

        now = datetime.now(UTC)
        release_id = f"{now:%Y%m%d%H%M%S}-{source_digest[:8]}"
        build_log = paths.build_logs / f"{service}-{release_id}.log"
        started = time.monotonic()
        _run_build(svc.build, staging, build_log, service, release_id, loaded.root, log)
        final = service_dir / release_id
        staging.rename(final)
        digest = tree_digest(final, exclude={MANIFEST})
        manifest = {
            "service": service,
            "release": release_id,
            "git_commit": git.commit if git else None,
            "git_commit_time": git.commit_time.isoformat() if git else None,
            "dirty": dirty or git is None,
            "created_at": now.isoformat(),
            "built_by": user,
            "digest": f"sha256:{digest}",
            "source_digest": f"sha256:{source_digest}",
            "build_commands": [command_argv(c) for c in svc.build],
            "build_seconds": round(time.monotonic() - started, 3),
            "build_log": str(build_log),
        }
        (final / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _seal(final)
        record = ReleaseRecord(
            id=release_id,
            service=service,
            path=str(final),
            digest=digest,
            source_digest=source_digest,
            created_at=now,
            built_by=user,
            git_commit=git.commit if git else None,
            git_commit_time=git.commit_time if git else None,
            build_log=str(build_log),
            manifest=manifest,
        )
        store.add_release(record)
        log(f"{service}: built release {release_id} ({digest[:12]})")
        return BuildResult(record, reused=False)
    finally:
        if staging.exists():
            _unseal(staging)
            shutil.rmtree(staging, ignore_errors=True)


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
    actual = tree_digest(path, exclude={MANIFEST})
    if actual != release.digest:
        raise ReleaseIntegrityError(
            f"release {release_id} of {service} was modified after it was built "
            f"(digest {actual[:12]} instead of {release.digest[:12]})",
            hint="releases are immutable: build a new one with: conveyor build",
        )
    return release


def remove_release_dir(path: Path) -> None:
    """Delete a sealed release directory."""
    if path.exists():
        _unseal(path)
        shutil.rmtree(path)


# -- source snapshots -----------------------------------------------------------------


def _export_git(git: GitInfo, source: Path, staging: Path) -> None:
    relative = source.relative_to(git.toplevel).as_posix()
    spec = f"HEAD:{relative}" if relative != "." else "HEAD"
    archive = run_git(["archive", "--format=tar", spec], git.toplevel)
    if archive.returncode != 0:
        raise BuildError(
            f"{source} has no files committed at HEAD: {archive.stderr.decode().strip()}",
            hint="commit the service's files, or build the working tree with --dirty",
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(staging, filter="data")


def _export_git_file(git: GitInfo, path: Path, destination: Path) -> None:
    relative = path.relative_to(git.toplevel).as_posix()
    shown = run_git(["show", f"HEAD:{relative}"], git.toplevel)
    if shown.returncode == 0:  # optional file: absent at HEAD means not included
        destination.write_bytes(shown.stdout)


def _worktree_files(git: GitInfo | None, source: Path) -> list[Path]:
    if git is not None:
        listed = run_git(
            ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "."], source
        )
        if listed.returncode == 0:
            names = [n for n in listed.stdout.decode().split("\0") if n]
            return [Path(n) for n in names if (source / n).is_file()]
    files = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            files.append((Path(dirpath) / name).relative_to(source))
    return files


def _copy_files(source: Path, files: list[Path], staging: Path) -> None:
    for relative in files:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target, follow_symlinks=False)


# -- build -----------------------------------------------------------------------------


def _run_build(
    commands: list[str | list[str]],
    cwd: Path,
    log_path: Path,
    service: str,
    release_id: str,
    project_root: Path,
    log: Callable[[str], None],
) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CONVEYOR_SERVICE": service,
        "CONVEYOR_RELEASE": release_id,
        "CONVEYOR_PROJECT_ROOT": str(project_root),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
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
                    f"{service}: build command {command!r} could not run: {error}",
                    hint=f"fix services/{service}/build",
                ) from error
            if done.returncode != 0:
                out.flush()
                tail = _tail(log_path, _BUILD_LOG_TAIL)
                raise BuildError(
                    f"{service}: build command {command!r} exited with {done.returncode}\n"
                    + "\n".join(f"    {line}" for line in tail),
                    hint=f"full build log: {log_path}",
                )


def _tail(path: Path, lines: int) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:]


def _seal(root: Path) -> None:
    """Make the tree read-only (owner write bits off), keeping execute bits."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames]:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    root.chmod(root.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _unseal(root: Path) -> None:
    root.chmod(root.stat().st_mode | stat.S_IWUSR)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
