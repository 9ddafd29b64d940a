"""Seal a built release (read-only, a digest and a file list) and check it later.

The digest covers every file but the manifest, the file list and the
service's `writable:` directories. The file list (`conveyor-files.txt`: one
`sha256<TAB>path` line a file, `-> target<TAB>path` a symlink) lets a failed
check name the files that changed instead of only saying that something did.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.releases.digest import Entry, combine, file_hashes, tree_entries

MANIFEST = "conveyor-release.json"
FILE_LIST = "conveyor-files.txt"
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_SHOWN_CHANGES = 10


@dataclass(frozen=True)
class Sealed:
    """What sealing a release recorded: its digest and how many files it has."""

    digest: str
    files: int


@dataclass(frozen=True)
class Check:
    """The result of checking a release against its recorded digest."""

    digest: str
    changes: tuple[str, ...]  # "modified: path", "added: path", "removed: path"

    def intact(self, expected: str) -> bool:
        return self.digest == expected

    def describe(self) -> str:
        shown = list(self.changes[:_SHOWN_CHANGES])
        more = len(self.changes) - len(shown)
        if more > 0:
            shown.append(f"... and {more} more")
        return "\n".join(f"    {line}" for line in shown)


def excluded_paths(writable: Iterable[str]) -> frozenset[str]:
    """What the digest leaves out: Conveyor's own files and the writable directories."""
    return frozenset({MANIFEST, FILE_LIST, *writable})


def record(
    root: Path, writable: Iterable[str], *, known: Mapping[str, str] | None = None
) -> Sealed:
    """Create the writable directories, write the file list and return the digest.

    `known` maps relative paths to the hex hashes of files known not to have
    changed (hard links to a sealed release's files): they are not read again.
    """
    writable = list(writable)
    for directory in writable:
        (root / directory).mkdir(parents=True, exist_ok=True)
    entries = tree_entries(root, exclude=excluded_paths(writable))
    known = known or {}
    hashes = {p: bytes.fromhex(h) for p, h in known.items() if not h.startswith("->")}
    hashes.update(file_hashes(root, [e for e in entries if e.relative not in hashes]))
    listed = _listing(entries, hashes)
    (root / FILE_LIST).write_text("".join(f"{v}\t{p}\n" for p, v in listed.items()))
    return Sealed(combine(entries, hashes), len(entries))


def make_read_only(root: Path, writable: Iterable[str]) -> None:
    """Take the write bits off every file and directory but the `writable` ones."""
    _make_read_only(root, {root / w for w in writable})


def check(root: Path, writable: Iterable[str]) -> Check:
    """Hash the release again; when it differs from its file list, say which files changed."""
    entries = tree_entries(root, exclude=excluded_paths(writable))
    hashes = file_hashes(root, entries)
    digest = combine(entries, hashes)
    now = _listing(entries, hashes)
    recorded = _read_file_list(root / FILE_LIST)
    changes: list[str] = []
    if recorded is not None:
        for path in sorted(now.keys() | recorded.keys()):
            if path not in recorded:
                changes.append(f"added: {path}")
            elif path not in now:
                changes.append(f"removed: {path}")
            elif now[path] != recorded[path]:
                changes.append(f"modified: {path}")
    return Check(digest, tuple(changes))


def make_removable(root: Path) -> None:
    """Give the tree's directories their write bit back so it can be deleted.

    Files keep their modes: a dependency directory shares its files (hard
    links) with other releases, which stay sealed.
    """
    if root.is_symlink() or not root.is_dir():
        return
    root.chmod(root.stat().st_mode | stat.S_IWUSR)
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _make_read_only(root: Path, writable: set[Path]) -> None:
    _read_only_tree(str(root), {str(w) for w in writable})
    root.chmod(root.stat().st_mode & ~_WRITE_BITS)


def _read_only_tree(directory: str, writable: set[str]) -> None:
    """Files first, then each directory after its contents: a read-only directory takes no
    new entries. Files already read-only (dependencies linked from a sealed release) are
    left alone."""
    with os.scandir(directory) as listing:
        children = list(listing)
    for child in children:
        if child.is_symlink() or child.path in writable:
            continue
        mode = child.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            _read_only_tree(child.path, writable)
        if mode & _WRITE_BITS:
            os.chmod(child.path, mode & ~_WRITE_BITS)  # noqa: PTH101 (hot loop)


def _listing(entries: list[Entry], hashes: dict[str, bytes]) -> dict[str, str]:
    return {
        e.relative: f"-> {e.link}" if e.link is not None else hashes[e.relative].hex()
        for e in entries
    }


def file_list(root: Path) -> dict[str, str]:
    """A sealed release's recorded hashes by relative path (empty for old releases)."""
    return _read_file_list(root / FILE_LIST) or {}


def _read_file_list(path: Path) -> dict[str, str] | None:
    try:
        text = path.read_text()
    except OSError:
        return None  # a release built before file lists existed: the digest alone decides
    recorded: dict[str, str] = {}
    for line in text.splitlines():
        value, _, relative = line.rpartition("\t")
        recorded[relative] = value
    return recorded
