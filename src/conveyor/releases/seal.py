"""Seal a built release (read-only, a digest and a file list) and check it later.

The digest covers every file but the manifest, the file lists and the
service's `writable:` directories. The file list (`conveyor-files.txt`: one
`sha256<TAB>path` line a file, `-> target<TAB>path` a symlink) lets a failed
check name the files that changed instead of only saying that something did.
The lines of the dependency files linked from an earlier release go to
`conveyor-files-shared.txt` instead, which is itself a hard link to the
earlier release's when it has the same lines (a venv's list is 0.9 MiB, a
`node_modules`'s 2.6 MiB: written once, not once a release). Dependencies kept
in the shared store (`depstore`) are symlinks the digest follows (`follow`);
their lines come from the store's own list, which the shared list then is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.releases.digest import Entry, combine, file_hashes, tree_entries

MANIFEST = "conveyor-release.json"
FILE_LIST = "conveyor-files.txt"
SHARED_LIST = "conveyor-files-shared.txt"
# A tree in the dependency store: each entry as the digest takes it (`X`, `F` or `L`, the
# hash or link target, the path), so that sealing a release that links it need not walk it.
ENTRIES = "conveyor-entries.txt"
_SHOWN_CHANGES = 10


@dataclass(frozen=True)
class Sealed:
    """What sealing a release recorded: its digest, how many files it has, the listing of
    its own files (path: hash) and the paths it shares with the earlier release."""

    digest: str
    files: int
    own: dict[str, str]
    shared: frozenset[str]


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
    return frozenset({MANIFEST, FILE_LIST, SHARED_LIST, *writable})


def record(
    root: Path,
    writable: Iterable[str],
    *,
    earlier: Path | None = None,
    linked: Mapping[str, int] | None = None,
    follow: Collection[str] = (),
    stored: Path | None = None,
    with_entries: bool = False,
) -> Sealed:
    """Create the writable directories, write the file lists and return the digest.

    `linked` are the files made hard links to the same paths in the sealed release
    `earlier` (its dependencies), relative path: inode: those still that inode when
    the tree is walked take the earlier file's recorded hash instead of being read
    again, and their lines go to the shared list. `follow` are the symlinks to
    dependencies in the store, whose sealed tree `stored` lists their entries (see
    `depstore`). `with_entries` writes such a list of this tree's entries.
    """
    writable = list(writable)
    for directory in writable:
        (root / directory).mkdir(parents=True, exist_ok=True)
    exclude = excluded_paths(writable)
    listed_in_store = _stored_entries(stored, follow) if stored is not None else None
    known: dict[str, str] = {}
    if listed_in_store is not None:  # the store's tree as it was sealed: no walk through it
        entries = [e for e in tree_entries(root, exclude=exclude) if e.relative not in follow]
        entries += listed_in_store[0]
        entries.sort(key=lambda e: e.relative)
        known = listed_in_store[1]
    else:
        entries = tree_entries(root, exclude=exclude, follow=frozenset(follow))
        if stored is not None:
            known = {p: v for p, v in file_list(stored).items() if not v.startswith("->")}
    if earlier is not None and linked:  # the store's entries have no inode: never linked
        known |= _still_linked(entries, earlier, linked)
    present = {e.relative for e in entries}
    known = {p: v for p, v in known.items() if p in present}
    hashes = {p: bytes.fromhex(h) for p, h in known.items()}
    hashes.update(file_hashes(root, [e for e in entries if e.relative not in hashes]))
    listed = _listing(entries, hashes)
    shared = {p for p in listed if p in known or _under(p, follow)}
    own = {p: v for p, v in listed.items() if p not in shared}
    (root / FILE_LIST).write_text(_lines(own))
    if shared:
        text = _lines({p: v for p, v in listed.items() if p in shared})
        lists = [stored / FILE_LIST if stored else None, earlier / SHARED_LIST if earlier else None]
        _write_shared(root, [path for path in lists if path is not None], text)
    if with_entries:
        (root / ENTRIES).write_text(
            "".join(f"{_kind(e)}\t{listed[e.relative].removeprefix('-> ')}\t{e.relative}\n"
                    for e in entries)
        )  # fmt: skip
    return Sealed(combine(entries, hashes), len(entries), own, frozenset(shared))


def _kind(entry: Entry) -> str:
    return "L" if entry.link is not None else "X" if entry.executable else "F"


def _stored_entries(
    stored: Path, follow: Collection[str]
) -> tuple[list[Entry], dict[str, str]] | None:
    """The entries under `follow` of a sealed store tree and their hashes, from its list
    (None for a tree without one)."""
    try:
        text = (stored / ENTRIES).read_text()
    except OSError:
        return None
    entries: list[Entry] = []
    hashes: dict[str, str] = {}
    for line in text.splitlines():
        kind, value, relative = line.split("\t", 2)
        if not _under(relative, follow):
            continue
        if kind == "L":
            entries.append(Entry(relative, value, False))
        else:
            entries.append(Entry(relative, None, kind == "X"))
            hashes[relative] = value
    return entries, hashes


def _under(relative: str, directories: Collection[str]) -> bool:
    return any(relative.startswith(d + "/") for d in directories)


def _lines(listed: Mapping[str, str]) -> str:
    return "".join(f"{v}\t{p}\n" for p, v in listed.items())


def _still_linked(
    entries: Iterable[Entry], earlier: Path, linked: Mapping[str, int]
) -> dict[str, str]:
    """The recorded hashes of the `linked` files that are still the earlier release's
    (the inode the walk saw is the one linked: a build command did not replace it)."""
    recorded = file_list(earlier)
    known: dict[str, str] = {}
    for entry in entries:
        inode = linked.get(entry.relative)
        if inode is None or inode != entry.inode:
            continue
        value = recorded.get(entry.relative)
        if value is not None and not value.startswith("->"):
            known[entry.relative] = value
    return known


def _write_shared(root: Path, sources: list[Path], text: str) -> None:
    """The shared list: a hard link to the first of the `sources` (the store's file list,
    the earlier release's shared list) that holds the same lines."""
    target = root / SHARED_LIST
    for theirs in sources:
        with contextlib.suppress(OSError):
            if theirs.read_text() == text:
                os.link(theirs, target)
                return
    target.write_text(text)


def make_read_only(root: Path, writable: Iterable[str], *, sealed: Collection[str] = ()) -> None:
    """Take the write bits off every file and directory but the `writable` ones, and make
    them readable (the top directory decides who may enter). `sealed` are relative paths
    of files already sealed (still linked to an earlier release's): not looked at."""
    base = str(root) + os.sep
    _read_only_tree(str(root), {str(root / w) for w in writable}, {base + p for p in sealed})
    # The top directory keeps everyone else out (`conveyor.runas.open_release` lets the
    # app's user in); what is inside is readable by whoever may enter.
    root.chmod(0o500)


def check(root: Path, writable: Iterable[str], follow: Collection[str] = ()) -> Check:
    """Hash the release again; when it differs from its file list, say which files changed."""
    entries = tree_entries(root, exclude=excluded_paths(writable), follow=frozenset(follow))
    hashes = file_hashes(root, entries)
    digest = combine(entries, hashes)
    now = _listing(entries, hashes)
    recorded = _read_file_list(root)
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


def remove(root: Path) -> None:
    """Delete a sealed tree (files it shares with other trees stay sealed)."""
    if root.exists():
        make_removable(root)
        shutil.rmtree(root)


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


def sealed_mode(mode: int) -> int:
    """A sealed entry's permission bits: no writes, read (and enter or run, where the
    owner may) for all."""
    executable = 0o111 if mode & stat.S_IXUSR or stat.S_ISDIR(mode) else 0
    return 0o444 | executable


def _read_only_tree(directory: str, writable: set[str], sealed: set[str]) -> None:
    """Files first, then each directory after its contents: a read-only directory takes no
    new entries. Files already sealed (dependencies linked from a sealed release) are left
    alone."""
    with os.scandir(directory) as listing:
        children = list(listing)
    for child in children:
        if child.is_symlink() or child.path in writable or child.path in sealed:
            continue
        mode = child.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            _read_only_tree(child.path, writable, sealed)
        if stat.S_IMODE(mode) != sealed_mode(mode):
            os.chmod(child.path, sealed_mode(mode))  # noqa: PTH101 (hot loop)


def _listing(entries: list[Entry], hashes: dict[str, bytes]) -> dict[str, str]:
    return {
        e.relative: f"-> {e.link}" if e.link is not None else hashes[e.relative].hex()
        for e in entries
    }


def file_list(root: Path) -> dict[str, str]:
    """A sealed release's recorded hashes by relative path (empty for old releases)."""
    return _read_file_list(root) or {}


def _read_file_list(root: Path) -> dict[str, str] | None:
    try:
        text = (root / FILE_LIST).read_text()
    except OSError:
        return None  # a release built before file lists existed: the digest alone decides
    with contextlib.suppress(FileNotFoundError):
        text = (root / SHARED_LIST).read_text() + text
    recorded: dict[str, str] = {}
    for line in text.splitlines():
        value, _, relative = line.rpartition("\t")
        recorded[relative] = value
    return recorded
