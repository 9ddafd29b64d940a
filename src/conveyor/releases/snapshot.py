"""Copy a service's source into a new release: git HEAD, or the working tree.

What is copied is the service's tracked files at HEAD (or, with `--dirty` or
outside git, the files of the working tree that git does not ignore), minus
the service's `exclude:` patterns, the config file and Conveyor's own home:
editing only `conveyor.yml` never makes a new release.
"""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

from conveyor.errors import BuildError
from conveyor.git import GitInfo
from conveyor.git import git as run_git
from conveyor.tarball import extract

_SKIP_DIRS = {".git", ".conveyor", "__pycache__", ".venv", "node_modules", ".mypy_cache"}
ALWAYS_EXCLUDED = (".conveyor/", "__pycache__/", "*.pyc")


class Excludes:
    """Gitignore-like patterns, matched against paths relative to the source.

    A pattern without a slash matches a name at any depth ("*.md", "tests/":
    the trailing slash means directories only); one with a slash inside is
    anchored at the source ("docs/**", "/local_media").
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self._anchored: list[tuple[str, bool]] = []
        self._names: list[tuple[str, bool]] = []
        for raw in patterns:
            directory = raw.endswith("/")
            pattern = raw.strip("/")
            if not pattern:
                continue
            if "/" in raw.rstrip("/"):
                self._anchored.append((pattern, directory))
            else:
                self._names.append((pattern, directory))

    def __call__(self, relative: str, directory: bool = False) -> bool:
        """Whether the file (or `directory`) at `relative` (POSIX, relative to the source)
        is left out."""
        parts = relative.split("/")
        for index, name in enumerate(parts):
            is_dir = directory or index < len(parts) - 1
            prefix = "/".join(parts[: index + 1])
            for pattern, dir_only in self._names:
                if (is_dir or not dir_only) and fnmatch.fnmatchcase(name, pattern):
                    return True
            for pattern, dir_only in self._anchored:
                if (is_dir or not dir_only) and fnmatch.fnmatchcase(prefix, pattern):
                    return True
        return False


def snapshot(
    git: GitInfo | None,
    source: Path,
    destination: Path,
    *,
    dirty: bool,
    excluded: Excludes,
    includes: Sequence[Path],
) -> str:
    """Copy the source into `destination`; returns what was taken, for the build log."""
    if git is not None and not dirty:
        _export_git(git, source, destination, excluded)
        for extra in includes:
            _export_git_file(git, extra, destination / extra.name)
        return f"git HEAD {git.commit[:12]} of {source}"
    files = [f for f in _worktree_files(git, source) if not excluded(f.as_posix())]
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target, follow_symlinks=False)
    for extra in includes:
        if extra.is_file():
            shutil.copy2(extra, destination / extra.name)
    if git is None:
        return f"working directory {source} (not a git repository: every file but {_skipped()})"
    return f"the working tree of {source} (--dirty: uncommitted changes included)"


def _skipped() -> str:
    return ", ".join(sorted(_SKIP_DIRS))


def _export_git(git: GitInfo, source: Path, destination: Path, excluded: Excludes) -> None:
    relative = source.relative_to(git.toplevel).as_posix()
    spec = f"HEAD:{relative}" if relative != "." else "HEAD"
    archive = run_git(["archive", "--format=tar", spec], git.toplevel)
    if archive.returncode != 0:
        raise BuildError(
            f"{source} has no files committed at HEAD: {archive.stderr.decode().strip()}",
            hint="commit the service's files, or build the working tree with --dirty",
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        members = [m for m in tar.getmembers() if not excluded(m.name.rstrip("/"), m.isdir())]
        extract(tar, destination, members)


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
