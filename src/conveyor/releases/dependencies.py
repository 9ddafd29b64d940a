"""Reuse a service's installed dependencies from an earlier release, by hard links.

A release's `dependencies:` are keyed by the bytes of their lock or
requirements files, the install commands and the service's env. When an
earlier release of the service has the same key, its dependency directories
are linked into the new release instead of installed again: the files are
shared (a release costs the disk of what changed), and the few files that
name the earlier release's path (script shebangs, a virtualenv's
`pyvenv.cfg` and activate scripts) are written anew with the new path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from conveyor.config import DependenciesConfig, command_argv
from conveyor.errors import BuildError

_REWRITE_LIMIT = 1 << 20  # scripts are small; a large file in bin/ is a binary


def dependency_key(
    spec: DependenciesConfig, release_dir: Path, env: dict[str, str], service: str
) -> str:
    """The hex key of the dependencies the install would produce in `release_dir`."""
    key = hashlib.sha256()
    recipe = {"install": [command_argv(c) for c in spec.install], "paths": spec.paths, "env": env}
    key.update(json.dumps(recipe, sort_keys=True).encode())
    for name in spec.files:
        path = release_dir / name
        if not path.is_file():
            raise BuildError(
                f"services/{service}/dependencies/files: {name} is not in the release",
                hint="commit it, or list the lock or requirements files the install reads",
            )
        key.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return key.hexdigest()


def link_tree(source: Path, destination: Path, old_root: str, new_root: str) -> None:
    """Recreate `source` at `destination` with hard links (copies where links fail).

    Files that name `old_root` (scripts in a `bin/` directory, `pyvenv.cfg`)
    are written with `new_root` instead, so that what runs from the new
    release never reaches into the old one.
    """
    old, new = old_root.encode(), new_root.encode()
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        there = destination / here.relative_to(source)
        there.mkdir(parents=True, exist_ok=True)
        for name in [*filenames, *(d for d in dirnames if (here / d).is_symlink())]:
            _link_one(here / name, there / name, old, new, rewrite=_may_name_path(here, name))
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]


def reusable(
    candidates: Iterable[tuple[Path, str | None]], key: str, paths: list[str]
) -> Path | None:
    """The first earlier release directory whose dependencies have `key` and are all there."""
    for directory, their_key in candidates:
        if their_key == key and all((directory / p).exists() for p in paths):
            return directory
    return None


def _may_name_path(directory: Path, name: str) -> bool:
    return directory.name in ("bin", "Scripts") or name == "pyvenv.cfg"


def _link_one(source: Path, target: Path, old: bytes, new: bytes, *, rewrite: bool) -> None:
    if source.is_symlink():
        link = str(source.readlink())
        target.symlink_to(link.replace(old.decode(), new.decode()))
        return
    if rewrite and source.stat().st_size <= _REWRITE_LIMIT:
        data = source.read_bytes()
        if old in data:
            target.write_bytes(data.replace(old, new))
            shutil.copymode(source, target)
            return
    try:
        os.link(source, target)
    except OSError:  # another file system, or the inode's link limit
        shutil.copy2(source, target)
