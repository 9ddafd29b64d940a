"""A service's build cache: directories its build commands keep between builds.

`build_cache: [.next/cache]` keeps what `next build` leaves there (Turbopack's
cache: the next build of a changed source takes about half the time). Before
the build commands run, each directory is copied into the new release from
`<releases>/.build-cache/<service>/`; once they succeed, the release's copy
replaces the cache. The cache is taken right after the build, before any
instance runs: what an app writes at run time into a release (`writable:`)
never reaches the next build. Copies, not hard links: a build that rewrites a
cache file in place must not change the cache, nor the release it came from.
A cache that cannot be read or written costs a slower build, never a failed one.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from conveyor.paths import Paths, make_dir

CACHE_DIR = ".build-cache"


def cache_dir(paths: Paths, service: str) -> Path:
    return paths.releases / CACHE_DIR / service


def restore(
    paths: Paths, service: str, kept: Sequence[str], release_dir: Path, log: Callable[[str], None]
) -> None:
    """Copy the cached directories into `release_dir` (where the release has none yet)."""
    cache = cache_dir(paths, service)
    restored = []
    for relative in kept:
        source, target = cache / relative, release_dir / relative
        if not source.is_dir() or target.exists() or target.is_symlink():
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, symlinks=True)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            log(f"{service}: build cache {relative} not restored ({exc.strerror or exc})")
            continue
        restored.append(relative)
    if restored:
        log(f"{service}: build cache restored: {', '.join(restored)}")


def save(
    paths: Paths, service: str, kept: Sequence[str], release_dir: Path, log: Callable[[str], None]
) -> None:
    """Make the release's directories the service's cache (all of them at once)."""
    if not kept:
        return
    cache = cache_dir(paths, service)
    incoming = cache.with_name(f".incoming-{service}-{secrets.token_hex(4)}")
    try:
        make_dir(cache.parent, 0o700)
        for left in _left_by_a_killed_build(cache.parent, service):
            shutil.rmtree(left, ignore_errors=True)
        incoming.mkdir(mode=0o700)
        for relative in kept:
            source = release_dir / relative
            if source.is_dir() and not source.is_symlink():
                (incoming / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(source, incoming / relative, symlinks=True)
        old = cache.with_name(f".replaced-{service}-{secrets.token_hex(4)}")
        with contextlib.suppress(FileNotFoundError):
            cache.rename(old)
        incoming.rename(cache)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        log(f"{service}: build cache not kept ({exc.strerror or exc}); the next build starts cold")
    finally:
        shutil.rmtree(incoming, ignore_errors=True)


def _left_by_a_killed_build(directory: Path, service: str) -> list[Path]:
    """The `.incoming-`/`.replaced-` directories of `service` (not of `web-api` for `web`:
    another service may be building now)."""
    own = re.compile(rf"\.(incoming|replaced)-{re.escape(service)}-[0-9a-f]{{8}}")
    return [path for path in directory.iterdir() if own.fullmatch(path.name)]
