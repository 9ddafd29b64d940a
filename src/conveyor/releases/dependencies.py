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
from conveyor.releases.relocate import rewrite_path


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


def link_tree(source: Path, destination: Path, old_root: str, new_root: str) -> dict[str, int]:
    """Recreate `source` at `destination` with hard links (copies where links fail).

    Files that name `old_root` (scripts in a `bin/` directory, `pyvenv.cfg`)
    are written with `new_root` instead, so that what runs from the new
    release never reaches into the old one. Returns the files that are hard
    links to `source`'s: their paths relative to `destination`, and their inode.
    """
    linked: dict[str, int] = {}
    _link_dir(str(source), str(destination), "", old_root.encode(), new_root.encode(), linked)
    return linked


def reusable(
    candidates: Iterable[tuple[Path, str | None]], key: str, paths: list[str]
) -> Path | None:
    """The first earlier release directory whose dependencies have `key` and are all there."""
    for directory, their_key in candidates:
        if their_key == key and all((directory / p).exists() for p in paths):
            return directory
    return None


def _link_dir(
    source: str, destination: str, prefix: str, old: bytes, new: bytes, linked: dict[str, int]
) -> None:
    os.makedirs(destination, exist_ok=True)  # noqa: PTH103 (a hot loop: no Path objects)
    rewrite_all = os.path.basename(source) in ("bin", "Scripts")  # noqa: PTH119
    with os.scandir(source) as listing:
        children = list(listing)
    for child in children:
        target = os.path.join(destination, child.name)  # noqa: PTH118
        if child.is_symlink():
            link = os.readlink(child.path)  # noqa: PTH115
            os.symlink(link.replace(old.decode(), new.decode()), target)  # noqa: PTH211
        elif child.is_dir(follow_symlinks=False):
            _link_dir(child.path, target, prefix + child.name + "/", old, new, linked)
        elif not (
            (rewrite_all or child.name == "pyvenv.cfg")
            and rewrite_path(child.path, target, old, new)
        ):
            try:
                os.link(child.path, target)
                linked[prefix + child.name] = child.inode()
            except OSError:  # another file system, or the inode's link limit
                shutil.copy2(child.path, target)
