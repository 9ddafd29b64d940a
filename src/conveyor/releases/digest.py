"""A sha256 digest of a directory tree: paths, executable bits, contents, symlinks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20


def tree_digest(root: Path, *, exclude: set[str] | None = None, extra: bytes = b"") -> str:
    """Hex sha256 over every file under `root`, in sorted path order.

    Names in `exclude` are skipped at the top level only (e.g. the manifest).
    `extra` is mixed in (e.g. the build recipe) so that the same source built
    differently gets a different digest.
    """
    skipped = exclude or set()
    total = hashlib.sha256(extra)
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            entries.append(Path(dirpath) / name)
    for path in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
        relative = path.relative_to(root).as_posix()
        if relative in skipped:
            continue
        total.update(relative.encode() + b"\0")
        if path.is_symlink():
            total.update(b"L" + str(path.readlink()).encode() + b"\0")
            continue
        executable = os.access(path, os.X_OK) and bool(path.stat().st_mode & 0o111)
        total.update(b"X" if executable else b"F")
        file_hash = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                file_hash.update(chunk)
        total.update(file_hash.digest())
    return total.hexdigest()
