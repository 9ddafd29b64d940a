"""A sha256 digest of a directory tree: paths, executable bits, contents, symlinks.

The digest is sha256 over, for every entry in sorted relative-path order, the
path, then either `L` + the link target (a symlink) or `X`/`F` (executable or
not) + the sha256 of the file's bytes. A symlink named in `follow` (a release's
dependencies kept in the shared store, see `conveyor.releases.depstore`) is
walked as the directory it points to: the digest is the same whether the tree
lies in the release or elsewhere, as it does on a host that got real
directories. One thread hashes faster than a pool
here: most release files are small, and a pool's per-file hand-off costs more
than the hashing (30,000 files, 136 MB: 0.3 s alone, 0.9 s on a pool).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_SMALL = 1 << 16  # files up to this size are read in one call


@dataclass(frozen=True)
class Entry:
    """One file or symlink of a tree, as the digest sees it."""

    relative: str
    link: str | None  # the target of a symlink
    executable: bool
    inode: int = field(default=0, compare=False)  # where the walk saw it (0: not known)


def tree_entries(
    root: Path, *, exclude: frozenset[str] = frozenset(), follow: frozenset[str] = frozenset()
) -> list[Entry]:
    """Every file and symlink under `root`, sorted, minus those under `exclude`.

    `exclude` holds relative POSIX paths: a file, or a directory whose whole
    subtree is left out (the manifest, a service's writable cache directories).
    `follow` holds the relative paths of symlinks walked as directories.
    """
    entries = [e for e in _walk(str(root), "", follow) if not _excluded(e.relative, exclude)]
    entries.sort(key=lambda e: e.relative)
    return entries


def tree_digest(
    root: Path, *, exclude: set[str] | frozenset[str] | None = None, extra: bytes = b""
) -> str:
    """Hex sha256 of the tree under `root` (see the module docstring).

    `extra` is mixed in first (e.g. the build recipe) so that the same source
    built differently gets a different digest.
    """
    entries = tree_entries(root, exclude=frozenset(exclude or ()))
    return combine(entries, file_hashes(root, entries), extra=extra)


def file_hashes(root: Path, entries: list[Entry]) -> dict[str, bytes]:
    """sha256 of each regular file among `entries`, by relative path."""
    base = str(root) + os.sep
    return {e.relative: hash_file(base + e.relative) for e in entries if e.link is None}


def combine(entries: list[Entry], hashes: dict[str, bytes], *, extra: bytes = b"") -> str:
    """The tree digest from its entries and their file hashes."""
    total = hashlib.sha256(extra)
    for entry in entries:
        total.update(entry.relative.encode() + b"\0")
        if entry.link is not None:
            total.update(b"L" + entry.link.encode() + b"\0")
        else:
            total.update(b"X" if entry.executable else b"F")
            total.update(hashes[entry.relative])
    return total.hexdigest()


def _walk(directory: str, prefix: str, follow: frozenset[str]) -> Iterator[Entry]:
    with os.scandir(directory) as listing:
        children = list(listing)
    for child in children:
        relative = prefix + child.name
        if child.is_symlink() and not (relative in follow and child.is_dir()):
            yield Entry(relative, os.readlink(child.path), False)  # noqa: PTH115 (hot loop)
        elif child.is_dir(follow_symlinks=relative in follow):
            yield from _walk(child.path, relative + "/", follow)
        else:
            info = child.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                yield Entry(relative, None, bool(info.st_mode & 0o111), info.st_ino)


def _excluded(relative: str, exclude: frozenset[str]) -> bool:
    if not exclude:
        return False
    if relative in exclude:
        return True
    parts = relative.split("/")
    return any("/".join(parts[:i]) in exclude for i in range(1, len(parts)))


def hash_file(path: str) -> bytes:
    """sha256 of the file at `path`."""
    # os.open/os.read, not open(): a quarter faster on 30,000 small files (no file object)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        data = os.read(descriptor, _SMALL + 1)
        if len(data) <= _SMALL:
            return hashlib.sha256(data).digest()
        digest = hashlib.sha256(data)
        while chunk := os.read(descriptor, 1 << 20):
            digest.update(chunk)
        return digest.digest()
    finally:
        os.close(descriptor)
