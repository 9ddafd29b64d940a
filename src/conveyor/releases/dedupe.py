"""Share a new release's unchanged files with the release built before it.

Most of what a build makes is what the previous build made: after a one-line
change, 138 of a Next.js release's `.next` files (5.7 of its 6 MiB) have the
same bytes as the previous release's. Once sealing has hashed the new
release, each of its files whose path and hash match the earlier release's
file list becomes a hard link to the earlier file, when that file still has
those bytes (it is hashed again: it may have been changed since it was
sealed), its mode is the one sealing gives the new file, and it is on the
same file system. Deleting either release leaves the other's files in place.

`.py` files are left alone: Python's bytecode caches name their source's
modification time, which a link to the earlier file would change.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from conveyor.releases.digest import hash_file
from conveyor.releases.seal import sealed_mode

_TEMPORARY = ".conveyor-link"


def link_unchanged(
    root: Path, earlier: Path, own: Mapping[str, str], theirs: Mapping[str, str]
) -> int:
    """Replace the files of `root` (listed in `own`, path: hex hash) that are the same as
    `earlier`'s (listed in `theirs`) by hard links to them; returns the bytes shared."""
    shared = 0
    new_base, old_base = str(root) + os.sep, str(earlier) + os.sep
    for relative, value in own.items():
        if theirs.get(relative) != value or value.startswith("->") or relative.endswith(".py"):
            continue
        new, old = new_base + relative, old_base + relative
        try:
            mine, its = os.lstat(new), os.lstat(old)
        except OSError:
            continue
        if not (
            stat.S_ISREG(its.st_mode)
            and its.st_dev == mine.st_dev
            and its.st_ino != mine.st_ino
            and stat.S_IMODE(its.st_mode) == sealed_mode(mine.st_mode)
            and hash_file(old).hex() == value
        ):
            continue
        try:
            os.link(old, new + _TEMPORARY)
        except OSError:  # the inode's link limit, or a file system without hard links
            continue
        os.replace(new + _TEMPORARY, new)  # noqa: PTH105 (a hot loop: no Path objects)
        shared += mine.st_size
    return shared
